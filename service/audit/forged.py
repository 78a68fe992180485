"""A record of the audit log without the service's signature, named so an auditor can find it.

It is reported with the run and batch it claims (when its body parses) and where it lies in the log;
its claims are shown, never believed: the record is not folded into any run.
"""

from typing import Protocol

from pydantic import ValidationError

from schemas.events import lifecycle_event_adapter
from service.audit.compare import Mismatch
from service.security.event_signing import BusRecord

FORGED_KIND = "forged"


class LogRecord(BusRecord, Protocol):
    """A record read from the events topic (aiokafka's ConsumerRecord satisfies it)."""

    partition: int
    offset: int


def forged_mismatch(record: LogRecord, refusal: str) -> Mismatch:
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    try:
        claimed = lifecycle_event_adapter.validate_json(record.value or b"")
    except ValidationError:
        return Mismatch(None, None, FORGED_KIND, f"{where}: {refusal}; its body is not a lifecycle event")
    return Mismatch(claimed.run_id, claimed.batch_id, FORGED_KIND,
                    f"{where}: {refusal}; it claims {claimed.event_type} (eventId {claimed.event_id}), "
                    "which was not folded into the run")

"""Park a message that cannot be processed, with its reason and origin, so the consumer can go on.

The copy is signed by the publisher like everything the service writes; a signature the original
carried is kept under DLQ_SOURCE_SIGNATURE_HEADER for the investigation, never passed on as the copy's own.
The header names are wire contracts, in schemas/wire.py.
"""

from typing import TYPE_CHECKING

from producers.publisher import Publisher
from schemas.signing import SIGNATURE_HEADER
from schemas.wire import (
    DLQ_REASON_HEADER,
    DLQ_SOURCE_OFFSET_HEADER,
    DLQ_SOURCE_PARTITION_HEADER,
    DLQ_SOURCE_SIGNATURE_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
)

if TYPE_CHECKING:
    from consumers.loop import Record

MAX_REASON = 1000


def dlq_headers(record: "Record", reason: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in record.headers or ():
        text = value.decode(errors="replace") if value is not None else ""
        headers[DLQ_SOURCE_SIGNATURE_HEADER if name == SIGNATURE_HEADER else name] = text
    headers.update({
        DLQ_REASON_HEADER: reason[:MAX_REASON],
        DLQ_SOURCE_TOPIC_HEADER: record.topic,
        DLQ_SOURCE_PARTITION_HEADER: str(record.partition),
        DLQ_SOURCE_OFFSET_HEADER: str(record.offset),
    })
    return headers


async def send_to_dlq(publisher: Publisher, topic: str, record: "Record", reason: str) -> None:
    """Publish the original bytes and key to `topic`; raises BrokerUnavailable like any send."""
    value = record.value if record.value is not None else b""
    await publisher.send(topic, value, key=record.key, headers=dlq_headers(record, reason))

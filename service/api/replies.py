"""Run-request outcomes to HTTP answers (docs/spec.md §3, the seed's shapes); pure, so every branch is unit-tested."""

from dataclasses import dataclass
from typing import Any, assert_never

from fastapi.responses import JSONResponse

from schemas.api import SyncAccepted, SyncResult
from schemas.messages import (
    BATCH_NOT_FAILED,
    BATCH_NOT_FOUND,
    BATCH_RUNNING,
    CANCEL_TOO_LATE,
    NOTHING_TO_CANCEL,
    OK,
    RUNNING_IN_BACKGROUND,
    SYNC_SUCCEEDED,
    sync_failed,
    unavailable,
)
from service.api.errors import envelope
from service.runs.outcomes import (
    Accepted,
    AlreadyRunning,
    BatchNotFound,
    CancelOutcome,
    CancelRequested,
    CancelTooLate,
    Finished,
    NothingToCancel,
    NotRetryable,
    SyncOutcome,
    Unavailable,
)


@dataclass(frozen=True)
class Reply:
    status: int
    message: str
    data: dict[str, Any] | None = None

    def response(self) -> JSONResponse:
        return envelope(self.status, self.message, self.data)


def _common(outcome: BatchNotFound | AlreadyRunning | Unavailable) -> Reply:
    match outcome:
        case BatchNotFound():
            return Reply(404, BATCH_NOT_FOUND)
        case AlreadyRunning(batch_id=batch_id, run_id=run_id):
            return Reply(409, BATCH_RUNNING, {"batchId": batch_id, "runId": str(run_id)})
        case Unavailable(part=part):
            return Reply(503, unavailable(part))
        case _:
            assert_never(outcome)


def sync_reply(outcome: SyncOutcome) -> Reply:
    """The answer to `/sync` and `/retry`."""
    match outcome:
        case Finished(reply=reply) if reply.success:
            result = SyncResult.model_validate({
                "success": True, "batch_id": reply.batch_id, "message": SYNC_SUCCEEDED,
                "sync_time": reply.sync_time, "records_synced": reply.records_synced, "run_id": reply.run_id,
            })
            return Reply(200, OK, result.dump())
        case Finished(reply=reply):
            return Reply(400, sync_failed(reply.message))
        case Accepted(batch_id=batch_id, run_id=run_id):
            return Reply(202, RUNNING_IN_BACKGROUND, SyncAccepted(batch_id=batch_id, run_id=run_id).dump())
        case NotRetryable():
            return Reply(400, BATCH_NOT_FAILED)
        case BatchNotFound() | AlreadyRunning() | Unavailable():
            return _common(outcome)
        case _:
            assert_never(outcome)


def cancel_reply(outcome: CancelOutcome) -> Reply:
    """The answer to `/cancel`."""
    match outcome:
        case CancelRequested(batch_id=batch_id, run_id=run_id):
            return Reply(200, OK, {"batchId": batch_id, "runId": str(run_id)})
        case NothingToCancel():
            return Reply(400, NOTHING_TO_CANCEL)
        case CancelTooLate(batch_id=batch_id, run_id=run_id):
            return Reply(409, CANCEL_TOO_LATE, {"batchId": batch_id, "runId": str(run_id)})
        case BatchNotFound() | Unavailable():
            return _common(outcome)
        case _:
            assert_never(outcome)

"""Fold lifecycle events into `run_history`, once per eventId, whatever order or repetition they come in.

Every update is monotonic (counts only rise, a finished run never goes back to RUNNING), so replaying
the log, or part of it, over an existing projection changes nothing.
"""

from sqlalchemy import case, delete, func, literal
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import RunStatus
from schemas.events import BatchSyncCompleted, BatchSyncProgress, BatchSyncStarted, ErrorCode
from service.db.models import ConsumerOffset, ProjectedEvent, RunHistory

ProjectedEventType = BatchSyncStarted | BatchSyncProgress | BatchSyncCompleted

TERMINAL = (RunStatus.SUCCESS.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value)
PROJECTOR_GROUP_SUFFIX = ".projector"


def projector_group(topic_prefix: str) -> str:
    """The projector's consumer group, also the key of its offsets in `consumer_offsets`."""
    return f"{topic_prefix}{PROJECTOR_GROUP_SUFFIX}"


def completed_status(event: BatchSyncCompleted) -> RunStatus:
    if event.success:
        return RunStatus.SUCCESS
    if event.error_code is ErrorCode.CANCELLED:
        return RunStatus.CANCELLED
    return RunStatus.FAILED


async def project(session: AsyncSession, event: ProjectedEventType) -> bool:
    """Apply `event` to the run's history row; False when this eventId was projected before."""
    claimed = await session.execute(
        insert(ProjectedEvent)
        .values(event_id=event.event_id, run_id=event.run_id)
        .on_conflict_do_nothing(index_elements=[ProjectedEvent.event_id])
        .returning(ProjectedEvent.event_id)
    )
    if claimed.first() is None:
        return False
    if event.run_id is not None:
        await session.execute(_upsert(event))
    return True


async def clear(session: AsyncSession, group_id: str | None = None) -> None:
    """Wipe the projection and the offsets it was built from (every projector group unless one is named)."""
    await session.execute(delete(RunHistory))
    await session.execute(delete(ProjectedEvent))
    offsets = delete(ConsumerOffset)
    if group_id is not None:
        offsets = offsets.where(ConsumerOffset.group_id == group_id)
    else:
        offsets = offsets.where(ConsumerOffset.group_id.endswith(PROJECTOR_GROUP_SUFFIX))
    await session.execute(offsets)


def _upsert(event: ProjectedEventType):
    table = RunHistory.__table__
    row = {
        "run_id": event.run_id,
        "batch_id": event.batch_id,
        "correlation_id": event.correlation_id,
        "status": RunStatus.RUNNING.value,
        "events": 1,
        "last_event_at": event.occurred_at,
    }
    if isinstance(event, BatchSyncCompleted):
        row.update(status=completed_status(event).value, **_completed_fields(event))
    elif isinstance(event, BatchSyncStarted):
        row.update(_started_fields(event))
    else:
        row.update(records_read=event.records_read, records_synced=event.records_written, chunks=event.chunk)
    stmt = insert(RunHistory).values(**row)
    new = stmt.excluded
    still_open = table.c.status.not_in(TERMINAL)
    common = {
        "events": table.c.events + 1,
        "last_event_at": func.greatest(table.c.last_event_at, new.last_event_at),
        "correlation_id": func.coalesce(table.c.correlation_id, new.correlation_id),
    }
    if isinstance(event, BatchSyncCompleted):
        updates = {**common, "status": new.status, **{k: getattr(new, k) for k in _completed_fields(event)}}
    elif isinstance(event, BatchSyncStarted):
        updates = {
            **common,
            "status": case((still_open, literal(RunStatus.RUNNING.value)), else_=table.c.status),
            "trigger": func.coalesce(table.c.trigger, new.trigger),
            "requested_by": func.coalesce(table.c.requested_by, new.requested_by),
            "started_at": func.least(table.c.started_at, new.started_at),
            "resumed_from_run_id": func.coalesce(new.resumed_from_run_id, table.c.resumed_from_run_id),
            "config_hash": func.coalesce(new.config_hash, table.c.config_hash),
        }
    else:
        updates = {
            **common,
            "records_read": func.greatest(table.c.records_read, new.records_read),
            "records_synced": case(
                (still_open, func.greatest(table.c.records_synced, new.records_synced)),
                else_=table.c.records_synced,
            ),
            "chunks": func.greatest(table.c.chunks, new.chunks),
        }
    return stmt.on_conflict_do_update(index_elements=[table.c.run_id], set_=updates)


def _started_fields(event: BatchSyncStarted) -> dict:
    return {
        "trigger": event.trigger.value,
        "requested_by": event.requested_by,
        "started_at": event.started_at,
        "resumed_from_run_id": event.resumed_from_run_id,
        "config_hash": event.config_hash,
    }


def _completed_fields(event: BatchSyncCompleted) -> dict:
    return {
        "finished_at": event.sync_time,
        "records_synced": event.records_synced,
        "duration_ms": event.duration_ms,
        "message": event.message,
        "error_code": event.error_code.value if event.error_code else None,
        "cancelled_by": event.cancelled_by,
        "success": event.success,
    }

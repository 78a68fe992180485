"""Run lifecycle in the state store, one transaction per step; events go to the outbox in the same one.

Ownership is a lease: the worker that holds `owner` renews `lease_until`; an expired lease lets any
worker claim the run and resume it. Every write after the claim is fenced on `owner`, so a worker
that lost its lease cannot overwrite the new owner's work.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.events import (
    BatchSyncCompleted,
    BatchSyncProgress,
    BatchSyncRequested,
    BatchSyncStarted,
    ErrorCode,
    Event,
    Trigger,
)
from schemas.status import ACTIVE, BatchStatus, RunStatus, sql_list
from schemas.topics import Topics
from service.db import driver
from service.db.models import Batch, Run
from service.runs.outbox import QueuedEvent, add_event, insert_events
from service.runs.snapshot import config_hash, config_snapshot, run_id_for
from service.runs.status import may_become, status_for_error

PRODUCER = "batchsync-worker"


def utcnow() -> datetime:
    return datetime.now(UTC)


_RELAXED = "SET LOCAL synchronous_commit TO OFF"


async def relaxed(session: AsyncSession) -> None:
    """Commit this transaction without waiting for the WAL flush: for state whose loss on a database
    crash is harmless (a claim, a lease, mirrored progress); admissions and outcomes stay durable."""
    await session.execute(text(_RELAXED))


async def active_run(session: AsyncSession, batch_id: int) -> Run | None:
    return await session.scalar(
        select(Run).where(Run.batch_id == batch_id, Run.status.in_(sorted(ACTIVE)))
        .order_by(Run.created_at).limit(1)
    )


async def latest_run(session: AsyncSession, batch_id: int) -> Run | None:
    return await session.scalar(
        select(Run).where(Run.batch_id == batch_id).order_by(Run.created_at.desc()).limit(1)
    )


def new_run(
    batch: Batch,
    *,
    request_id: str,
    correlation_id: str,
    reply_to: str | None,
    trigger: str,
    requested_by: str,
    owner: str | None,
    lease_until: Any,
    resumed_from: Run | None = None,
) -> Run:
    """A PENDING run; a retry inherits the checkpoint key and config of the run it resumes."""
    run_id = run_id_for(request_id)
    snapshot = resumed_from.config if resumed_from is not None and resumed_from.config else config_snapshot(batch)
    return Run(
        id=run_id,
        batch_id=batch.id,
        request_id=request_id,
        correlation_id=correlation_id,
        reply_to=reply_to,
        trigger=trigger,
        requested_by=requested_by,
        status=RunStatus.PENDING,
        resumed_from_run_id=resumed_from.id if resumed_from is not None else None,
        checkpoint_key=resumed_from.checkpoint_key if resumed_from is not None else run_id,
        config=snapshot,
        config_hash=config_hash(snapshot),
        owner=owner,
        lease_until=lease_until,
    )


def rejection(event: BatchSyncRequested, code: ErrorCode, message: str) -> BatchSyncCompleted:
    return BatchSyncCompleted(
        correlation_id=event.correlation_id, batch_id=event.batch_id, run_id=None, producer=PRODUCER,
        success=False, message=message, sync_time=utcnow(), error_code=code,
    )


def readdressed(reply: BatchSyncCompleted, correlation_id: str) -> BatchSyncCompleted:
    """`reply` as the answer to another request of the same run (a duplicate, a waiter): its own event, with an
    eventId of its own, since readers dedupe by eventId and two requests may share a reply topic; derived from
    the reply's and the correlation id, so the same answer sent twice is still one event."""
    if correlation_id == reply.correlation_id:
        return reply
    return reply.model_copy(update={"correlation_id": correlation_id,
                                    "event_id": uuid.uuid5(reply.event_id, correlation_id)})


def completed_from_run(run: Run, correlation_id: str) -> BatchSyncCompleted:
    duration = 0
    if run.started_at and run.finished_at:
        duration = int((run.finished_at - run.started_at).total_seconds() * 1000)
    return BatchSyncCompleted(
        correlation_id=correlation_id, batch_id=run.batch_id, run_id=run.id, producer=PRODUCER,
        success=run.status == RunStatus.SUCCESS, message=run.message or "",
        sync_time=run.finished_at or utcnow(), records_synced=run.records_written, duration_ms=duration,
        error_code=ErrorCode(run.error_code) if run.error_code else None,
        cancelled_by=run.cancel_requested_by if run.status == RunStatus.CANCELLED else None,
        records_rejected=run.records_rejected or 0, source_count=run.source_count, target_count=run.target_count,
        reconciled=run.reconciled,
    )


@dataclass(frozen=True)
class Progressed:
    still_ours: bool
    cancelled_by: str | None


def lease_from_now(seconds: float) -> Any:
    """A lease's end on the state store's clock, never the worker's: expiry is compared with the database's
    `now()`, so a worker whose clock is behind (or ahead) can neither let a live run be taken over nor
    delay the takeover of a dead one (docs/spec.md §9)."""
    return func.now() + timedelta(seconds=seconds)


RUN_COLUMNS = driver.columns(Run)
"""Every column of `runs`, as the driver statements return a run (built into a detached `Run`)."""


class ClaimBusy(Exception):
    """Another run of the same batch is RUNNING; try again later."""


async def claim(conn: asyncpg.Connection, run_id: uuid.UUID, worker_id: str, lease_seconds: float) -> Run | None:
    """Move an owned, active run to RUNNING in one statement, in the driver transaction `conn`; None when it is
    no longer ours or active. Raises ClaimBusy when the one-RUNNING-run-per-batch index refuses it. The commit
    does not wait for the WAL flush (a claim lost with a crash is claimed again: see `relaxed`)."""
    await conn.execute(_RELAXED)
    return await take(conn, run_id, worker_id, lease_seconds)


_TAKE = f"""
UPDATE runs SET status = $4, started_at = coalesce(started_at, now()), lease_until = now() + $3::interval,
       attempts = attempts + 1
 WHERE id = $1 AND owner = $2 AND status = ANY($5::varchar[])
RETURNING {RUN_COLUMNS}"""


async def take(conn: asyncpg.Connection, run_id: uuid.UUID, worker_id: str, lease_seconds: float) -> Run | None:
    """`claim` inside the caller's driver transaction, keeping its durability (the worker's admission claims in
    its own, durable one). The claim runs in a savepoint: when the index refuses it (ClaimBusy) the savepoint
    alone rolls back and the caller's transaction is still good."""
    try:
        async with conn.transaction():
            row = await conn.fetchrow(_TAKE, run_id, worker_id, timedelta(seconds=lease_seconds), RunStatus.RUNNING,
                                      sorted(may_become(RunStatus.RUNNING)))
    except asyncpg.IntegrityConstraintViolationError as error:
        raise ClaimBusy(str(run_id)) from error
    if row is None:
        return None
    await conn.execute("UPDATE batches SET status = $2, updated_at = now() WHERE id = $1", row["batch_id"],
                       BatchStatus.RUNNING)
    return driver.detached(Run, row)


async def record_start(
    session: AsyncSession, run: Run, topics: Topics, resumed_from_chunk: int, total_estimate: int | None
) -> None:
    await session.execute(
        update(Run).where(Run.id == run.id)
        .values(resumed_from_chunk=resumed_from_chunk, total_estimate=total_estimate)
    )
    add_event(session, topics.events, started_event(run, resumed_from_chunk))


def started_event(run: Run, resumed_from_chunk: int | None = None) -> BatchSyncStarted:
    return BatchSyncStarted(
        correlation_id=run.correlation_id, batch_id=run.batch_id, run_id=run.id, producer=PRODUCER,
        trigger=Trigger(run.trigger), requested_by=run.requested_by, started_at=run.started_at or utcnow(),
        resumed_from_chunk=run.resumed_from_chunk if resumed_from_chunk is None else resumed_from_chunk,
        resumed_from_run_id=run.resumed_from_run_id, config_hash=run.config_hash,
    )


async def record_progress(
    session: AsyncSession,
    run: Run,
    worker_id: str,
    *,
    chunk: int,
    records_read: int,
    records_written: int,
    checkpoint: Any,
    event: BatchSyncProgress | None,
    topics: Topics,
    records_rejected: int = 0,
) -> Progressed:
    """Mirror the progress on the run, and learn whether it is still ours and whether a cancel was asked."""
    await relaxed(session)
    row = (await session.execute(
        update(Run).where(Run.id == run.id, Run.owner == worker_id)
        .values(chunks=chunk, records_read=records_read, records_written=records_written, checkpoint=checkpoint,
                records_rejected=records_rejected)
        .returning(Run.cancel_requested_by)
    )).first()
    if row is None:
        return Progressed(still_ours=False, cancelled_by=None)
    if event is not None:
        add_event(session, topics.events, event)
    return Progressed(still_ours=True, cancelled_by=row.cancel_requested_by)


_COMPLETE = f"""
UPDATE runs SET status = $3, finished_at = $4, started_at = coalesce(started_at, $4), message = $5,
       error_code = $6, owner = NULL, lease_until = NULL,
       records_read = coalesce($7, records_read), records_written = coalesce($8, records_written),
       chunks = coalesce($9, chunks), records_rejected = coalesce($10, records_rejected),
       source_count = coalesce($11, source_count), target_count = coalesce($12, target_count),
       reconciled = coalesce($13, reconciled),
       resumed_from_chunk = CASE WHEN $14 THEN $15 ELSE resumed_from_chunk END,
       total_estimate = CASE WHEN $14 THEN $16 ELSE total_estimate END
 WHERE id = $1 AND owner = $2 AND status = ANY($17::varchar[])
RETURNING {RUN_COLUMNS}"""

_BATCH_ENDED = """
UPDATE batches SET status = $2, last_sync_time = $3, last_records_synced = $4, last_run_id = $5, last_error = $6,
       last_success_time = CASE WHEN $7 THEN $3 ELSE last_success_time END,
       high_water_mark = CASE WHEN $8 THEN $9::jsonb ELSE high_water_mark END, updated_at = now()
 WHERE id = $1"""


async def complete(
    conn: asyncpg.Connection,
    run_id: uuid.UUID,
    worker_id: str,
    topics: Topics,
    *,
    error_code: ErrorCode | None,
    message: str,
    records_read: int | None = None,
    records_written: int | None = None,
    chunks: int | None = None,
    records_rejected: int | None = None,
    source_count: int | None = None,
    target_count: int | None = None,
    reconciled: bool | None = None,
    high_water_mark: Any = None,
    start: tuple[int, int | None] | None = None,
    replies: list[QueuedEvent] | None = None,
) -> BatchSyncCompleted | None:
    """Finish the run, update its batch, record the outcome and queue the Completed event and reply, in the
    driver transaction `conn` (service/db/driver.py: every sync ends here, so it skips the ORM).

    The run moves in one fenced statement (ours, and allowed to become the new status) that returns it, so
    the hot path reads no row before writing it; None when it is no longer ours or already ended. A count
    left None keeps the run's value.
    `start` (resumed-from chunk, total estimate) queues the Started event first when it was not written
    yet (short runs, runs that failed before the engine began), so every run in the log has both.
    `replies` collects the outbox rows of the replies, for the caller to publish at once after the commit.
    """
    status = status_for_error(error_code.value if error_code else None)
    now = utcnow()
    resumed_from_chunk, total_estimate = start if start is not None else (0, None)
    row = await conn.fetchrow(
        _COMPLETE, run_id, worker_id, status, now, message, error_code.value if error_code else None,
        records_read, records_written, chunks, records_rejected, source_count, target_count, reconciled,
        start is not None, resumed_from_chunk, total_estimate, sorted(may_become(status)))
    if row is None:
        return None
    run = driver.detached(Run, row)
    reply = completed_from_run(run, run.correlation_id)
    success = status is RunStatus.SUCCESS
    await conn.execute(
        _BATCH_ENDED, run.batch_id, BatchStatus.of_run(status), now, run.records_written, run.id,
        None if success else message, success, success and high_water_mark is not None,
        json.dumps(high_water_mark))
    await conn.execute("UPDATE request_ledger SET outcome = $2 WHERE request_id = $1", run.request_id,
                       json.dumps(reply.model_dump(mode="json")))
    events: list[tuple[str, Event, str | None]] = []
    if start is not None:  # first, so every event row goes in one INSERT, in order
        events.append((topics.events, started_event(run), None))
    events.append((topics.events, reply, None))
    answers = [(run.reply_to, run.correlation_id)] if run.reply_to else []
    answers += [(waiter["replyTo"], waiter["correlationId"]) for waiter in run.waiters or []]
    events += [(topic, readdressed(reply, correlation), correlation) for topic, correlation in answers]
    queued = await insert_events(conn, events)
    if replies is not None:
        replies.extend(queued[len(queued) - len(answers):])
    return reply


async def begin_finishing(conn: asyncpg.Connection, run_id: uuid.UUID, worker_id: str) -> Progressed:
    """Pass the point after which a cancel is too late (an overwrite's swap, an upsert's merge), unless a cancel
    was accepted first: then `cancelled_by` names who asked and the run must stop. Serialised with
    `requests.request_cancel` by the run row's lock, so a cancel is either accepted before this (the run ends
    CANCELLED) or answered 409 after it (the run ends as it would have). In a driver transaction, as `complete`."""
    passed = await conn.fetchval(
        "UPDATE runs SET finishing_at = coalesce(finishing_at, clock_timestamp()) "
        "WHERE id = $1 AND owner = $2 AND cancel_requested_by IS NULL RETURNING id", run_id, worker_id)
    if passed is not None:
        return Progressed(still_ours=True, cancelled_by=None)
    row = await conn.fetchrow("SELECT owner, cancel_requested_by FROM runs WHERE id = $1", run_id)
    if row is None or row["owner"] != worker_id:
        return Progressed(still_ours=False, cancelled_by=None)
    return Progressed(still_ours=True, cancelled_by=row["cancel_requested_by"])


async def renew_leases(
    session: AsyncSession, worker_id: str, run_ids: list[uuid.UUID], lease_seconds: float
) -> dict[uuid.UUID, str | None]:
    """Extend our leases; returns run id → who asked to cancel it (None if nobody) for runs still ours."""
    if not run_ids:
        return {}
    await relaxed(session)
    rows = await session.execute(
        update(Run).where(Run.id.in_(run_ids), Run.owner == worker_id)
        .values(lease_until=lease_from_now(lease_seconds))
        .returning(Run.id, Run.cancel_requested_by)
    )
    return {row.id: row.cancel_requested_by for row in rows}


async def release(session: AsyncSession, worker_id: str, run_ids: list[uuid.UUID]) -> None:
    """On a clean shutdown: expire our leases at once so another worker resumes without waiting."""
    if run_ids:
        await session.execute(
            update(Run).where(Run.id.in_(run_ids), Run.owner == worker_id, Run.status.in_(sorted(ACTIVE)))
            .values(lease_until=lease_from_now(-1))
        )


async def claim_orphans(session: AsyncSession, worker_id: str, lease_seconds: float, limit: int) -> list[Run]:
    """Take over active runs whose owner's lease expired (their worker died)."""
    ids = (await session.execute(text(
        f"SELECT id FROM runs WHERE status IN ({sql_list(ACTIVE)}) AND lease_until < now() "
        "ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT :limit"
    ), {"limit": limit})).scalars().all()
    if not ids:
        return []
    await session.execute(
        update(Run).where(Run.id.in_(ids))
        .values(owner=worker_id, lease_until=lease_from_now(lease_seconds))
    )
    return list((await session.scalars(select(Run).where(Run.id.in_(ids)))).all())

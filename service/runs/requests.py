"""Asking for a sync, a retry or a cancel: the decisions made before Kafka (by the API) and after it (by
the worker that reads the request).

404 and 409 are decided here, in one transaction holding the batch row lock, so two concurrent
HTTP requests can never both start a run. The PENDING run is committed before the request is
published, which is why the API can answer 202 with a run id even when `wait=0`.

On the worker's side, `admit` records the request in the ledger and decides, in one durable transaction,
whether to run it, answer it from the record (the reply row goes to the outbox in the same transaction)
or leave it to the worker that owns its run; only then is the request's offset committable.
"""

import json
import uuid
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

import asyncpg
from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.events import BatchSyncCompleted, BatchSyncRequested, ErrorCode, Trigger
from schemas.messages import BATCH_NOT_FAILED, BATCH_NOT_FOUND, BROKER, DATABASE, REQUEST_MISMATCH, unavailable
from schemas.status import ACTIVE, TERMINAL, RunStatus
from service.config import Settings
from service.db import driver
from service.db.failures import database_down
from service.db.models import Batch, RequestLedger, Run
from service.ports import BrokerUnavailable, SyncRequester
from service.runs import lifecycle
from service.runs.lifecycle import (
    active_run,
    completed_from_run,
    new_run,
    readdressed,
    rejection,
)
from service.runs.outbox import insert_events
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
from service.runs.snapshot import run_id_for

PRODUCER = "batchsync-api"
PENDING_GRACE_SECONDS = 30
"""An API-created run waits this long for a worker to take it before the orphan scan may."""


class RequestContext(Protocol):
    """What asking needs; the API's AppState satisfies it."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    requester: SyncRequester


_LOCKED_BATCH = f"""
SELECT {driver.columns(Batch, "b")},
       (SELECT r.id FROM runs r WHERE r.batch_id = b.id AND r.status = ANY($2::varchar[])
         ORDER BY r.created_at LIMIT 1) AS active_run_id
  FROM batches b WHERE b.id = $1 FOR UPDATE OF b"""
_BATCH = f"SELECT {driver.columns(Batch)} FROM batches WHERE id = $1"
_RUN = f"SELECT {lifecycle.RUN_COLUMNS} FROM runs WHERE id = $1"
_LOCKED_RUN = f"{_RUN} FOR UPDATE"
_LATEST_RUN = f"SELECT {lifecycle.RUN_COLUMNS} FROM runs WHERE batch_id = $1 ORDER BY created_at DESC LIMIT 1"


async def _locked_batch(conn: asyncpg.Connection, batch_id: int) -> tuple[Batch | None, uuid.UUID | None]:
    """The batch, row-locked until the transaction ends (so decisions about its runs are serial), and the id of
    its active run if any, in one statement."""
    row = await conn.fetchrow(_LOCKED_BATCH, batch_id, sorted(ACTIVE))
    if row is None:
        return None, None
    return driver.detached(Batch, row), row["active_run_id"]


async def request_sync(state: RequestContext, batch_id: int, requested_by: str, wait: float) -> SyncOutcome:
    return await _request(state, batch_id, requested_by, wait, Trigger.HTTP)


async def request_retry(state: RequestContext, batch_id: int, requested_by: str, wait: float) -> SyncOutcome:
    return await _request(state, batch_id, requested_by, wait, Trigger.RETRY)


async def _request(
    state: RequestContext, batch_id: int, requested_by: str, wait: float, trigger: Trigger
) -> SyncOutcome:
    request_id = str(uuid.uuid4())
    correlation_id = str(uuid.uuid4())
    reply_to = state.settings.topics.replies
    try:
        async with driver.transaction(state.sessions) as conn:  # on every HTTP sync's path: the driver, no ORM
            batch, running = await _locked_batch(conn, batch_id)
            if batch is None:
                return BatchNotFound(batch_id)
            if running is not None:
                return AlreadyRunning(batch_id, running)
            resumed_from = None
            if trigger is Trigger.RETRY:
                resumed_from = await _run(conn, _LATEST_RUN, batch_id)
                if resumed_from is None or resumed_from.status != RunStatus.FAILED:
                    return NotRetryable(batch_id)
            run = new_run(
                batch, request_id=request_id, correlation_id=correlation_id, reply_to=reply_to,
                trigger=trigger.value, requested_by=requested_by, owner=None, lease_until=None,
                resumed_from=resumed_from,
            )
            await _insert_run(conn, run, timedelta(seconds=PENDING_GRACE_SECONDS))
            run_id = run.id
    except Exception as error:
        if database_down(error):
            return Unavailable(DATABASE)
        raise

    event = BatchSyncRequested(
        correlation_id=correlation_id, batch_id=batch_id, producer=PRODUCER, request_id=request_id,
        requested_by=requested_by, trigger=trigger, reply_to=reply_to,
        resume_run_id=resumed_from.id if resumed_from is not None else None,
    )
    try:
        reply = await state.requester.request(event, timeout=wait)
    except BrokerUnavailable:
        if await _withdraw(state, event, run_id):
            return Unavailable(BROKER)
        return Accepted(batch_id, run_id)  # a worker took it after all: it runs
    if reply is None:
        return Accepted(batch_id, run_id)
    return Finished(reply)


async def _withdraw(state: RequestContext, event: BatchSyncRequested, run_id: uuid.UUID) -> bool:
    """The publish failed or timed out, so the client hears 503: drop the PENDING run (the batch is not
    blocked) and record the outcome in the ledger, so that a request the broker did take after all is
    answered from the record, never run. False when a worker already took the run."""
    try:
        async with state.sessions.begin() as session:
            withdrawn = (await session.execute(
                delete(Run).where(Run.id == run_id, Run.status == RunStatus.PENDING, Run.owner.is_(None))
                .returning(Run.id)
            )).first()
            if withdrawn is None:
                return False
            outcome = rejection(event, ErrorCode.BROKER_UNAVAILABLE, unavailable(BROKER))
            await session.execute(
                insert(RequestLedger)
                .values(request_id=event.request_id, batch_id=event.batch_id, first_event_id=event.event_id,
                        outcome=outcome.model_dump(mode="json"))
                .on_conflict_do_update(index_elements=[RequestLedger.request_id],
                                       set_={"outcome": outcome.model_dump(mode="json")})
            )
            return True
    except Exception as error:
        if not database_down(error):
            raise
        return True


async def request_cancel(state: RequestContext, batch_id: int, requested_by: str) -> CancelOutcome:
    """Flag the active run; its worker stops at the next chunk boundary and records who cancelled. A run that
    already began to publish what it wrote (`finishing_at`, set by `lifecycle.begin_finishing` under the same
    row lock) can no longer be stopped: the cancel is answered as too late and not recorded."""
    try:
        async with state.sessions.begin() as session:
            # No lock on the batch row: a worker claiming the run locks the run and then the batch, so taking
            # them in the other order here deadlocked. The run row's lock alone serialises the handshake.
            batch = await session.get(Batch, batch_id)
            if batch is None:
                return BatchNotFound(batch_id)
            running = await active_run(session, batch_id)
            if running is None:
                return NothingToCancel(batch_id)
            flagged = await session.execute(
                update(Run).where(Run.id == running.id, Run.finishing_at.is_(None),
                                  Run.status.in_(sorted(ACTIVE)))
                .values(cancel_requested_by=func.coalesce(Run.cancel_requested_by, requested_by))
                .returning(Run.id)
            )
            if flagged.first() is None:
                return CancelTooLate(batch_id, running.id)
            return CancelRequested(batch_id, running.id)
    except Exception as error:
        if database_down(error):
            return Unavailable(DATABASE)
        raise


class Admission(StrEnum):
    """What the worker does with a request once it is admitted."""

    SCHEDULE = "schedule"
    """Run it: the run (`run_id_for(request_id)`) is this worker's now."""
    ANSWERED = "answered"
    """Answered from the record; the reply row is in the outbox, so wake the relay."""
    IGNORED = "ignored"
    """Its run is alive on another worker, which answers it at completion."""


class RequestRefused(Exception):
    """The state store refuses the request's values (out of range, too long): it can never be admitted."""


class Claimer(Protocol):
    """The executor's side of claiming a run in its admission's transaction (one transaction, not two)."""

    def can_start(self, batch_id: int) -> bool:
        """Whether a run of `batch_id` would start at once here (a free slot, no local run of the batch)."""
        ...

    async def claimed(self, conn: asyncpg.Connection, run: Run) -> None:
        """Read what the run needs inside the admission's driver transaction and keep it for `submit`."""
        ...

    def forget(self, run_id: uuid.UUID) -> None:
        """The admission did not commit: drop what `claimed` kept."""
        ...


async def admit(
    sessions: async_sessionmaker[AsyncSession], event: BatchSyncRequested, worker_id: str, lease_seconds: float,
    claimer: Claimer | None = None,
) -> Admission:
    """Admit one request in one durable transaction; RequestRefused when it never can be, any other error
    when it may be retried (the database is down). With a `claimer` that can start the run at once, the
    same transaction also claims it (RUNNING) and reads its spec, which saves the claim's own transaction.
    Every request a worker reads comes through here, so it runs on the driver (service/db/driver.py)."""
    run_id = run_id_for(event.request_id)
    try:
        async with driver.transaction(sessions) as conn:
            admission = await admit_request(conn, event, worker_id, lease_seconds)
            if admission is Admission.SCHEDULE and claimer is not None and claimer.can_start(event.batch_id):
                await _claim_now(conn, run_id, worker_id, lease_seconds, claimer)
            return admission
    except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as error:
        if claimer is not None:
            claimer.forget(run_id)
        raise RequestRefused(f"refused by the state store: {type(error).__name__}") from error
    except BaseException:
        if claimer is not None:
            claimer.forget(run_id)
        raise


async def _claim_now(
    conn: asyncpg.Connection, run_id: uuid.UUID, worker_id: str, lease_seconds: float, claimer: Claimer
) -> None:
    """Claim in the admission's transaction: when another run of the batch is RUNNING the index refuses the
    claim, its savepoint alone rolls back (lifecycle.take) and the run stays PENDING for the executor's usual
    claim."""
    try:
        run = await lifecycle.take(conn, run_id, worker_id, lease_seconds)
    except lifecycle.ClaimBusy:
        return
    if run is not None:
        await claimer.claimed(conn, run)


_LEDGER = """
INSERT INTO request_ledger (request_id, batch_id, first_event_id) VALUES ($1, $2, $3)
ON CONFLICT (request_id) DO UPDATE SET seen_count = request_ledger.seen_count + 1, last_seen_at = now()
RETURNING outcome"""

_OWN = """
UPDATE runs SET owner = $2, lease_until = now() + $3::interval
 WHERE id = $1 AND (owner IS NULL OR owner = $2 OR lease_until < now())
RETURNING id"""

_NEW_RUN = """
INSERT INTO runs (id, batch_id, request_id, correlation_id, reply_to, trigger, requested_by, status,
                  resumed_from_run_id, checkpoint_key, config, config_hash, owner, lease_until)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now() + $14::interval)"""


async def admit_request(
    conn: asyncpg.Connection, event: BatchSyncRequested, worker_id: str, lease_seconds: float
) -> Admission:
    """Record the request in the ledger, decide what to do with it and queue its answer if any, in the driver
    transaction `conn` (the caller commits). Leases are judged on the database's clock (lifecycle.lease_from_now)."""
    recorded_outcome = await conn.fetchval(_LEDGER, event.request_id, event.batch_id, event.event_id)
    if recorded_outcome is not None:
        reply = BatchSyncCompleted.model_validate(recorded_outcome)
        return await _answer(conn, event, readdressed(reply, event.correlation_id))

    run_id = run_id_for(event.request_id)
    lease = timedelta(seconds=lease_seconds)
    run = await _run(conn, _LOCKED_RUN, run_id)
    if run is not None:
        if run.batch_id != event.batch_id:
            return await _reject(conn, event, ErrorCode.CONFIG_INVALID, REQUEST_MISMATCH)
        if run.status in TERMINAL:
            return await _answer(conn, event, completed_from_run(run, event.correlation_id))
        await _wait_for_outcome(conn, run, event)
        taken = await conn.fetchval(_OWN, run_id, worker_id, lease)
        return Admission.SCHEDULE if taken is not None else Admission.IGNORED

    batch_row = await conn.fetchrow(_BATCH, event.batch_id)
    if batch_row is None:
        return await _reject(conn, event, ErrorCode.BATCH_NOT_FOUND, BATCH_NOT_FOUND)
    batch = driver.detached(Batch, batch_row)
    resumed_from = None
    if event.resume_run_id is not None:
        resumed_from = await _run(conn, _RUN, event.resume_run_id)
        latest = await _run(conn, _LATEST_RUN, batch.id)
        if (resumed_from is None or latest is None or latest.id != resumed_from.id
                or resumed_from.status != RunStatus.FAILED):
            # only the batch's latest run, and only a failed one: resuming an older one would write again
            # what later runs wrote, and move the incremental mark back
            return await _reject(conn, event, ErrorCode.NOT_RETRYABLE, BATCH_NOT_FAILED)
    await _insert_run(conn, new_run(
        batch, request_id=event.request_id, correlation_id=event.correlation_id, reply_to=event.reply_to,
        trigger=event.trigger.value, requested_by=event.requested_by, owner=worker_id, lease_until=None,
        resumed_from=resumed_from,
    ), lease)
    await conn.execute("UPDATE request_ledger SET run_id = $2 WHERE request_id = $1", event.request_id, run_id)
    return Admission.SCHEDULE


async def _insert_run(conn: asyncpg.Connection, run: Run, lease: timedelta) -> None:
    """Insert `new_run`'s row; its lease ends `lease` from now on the database's clock."""
    await conn.execute(
        _NEW_RUN, run.id, run.batch_id, run.request_id, run.correlation_id, run.reply_to, run.trigger,
        run.requested_by, run.status, run.resumed_from_run_id, run.checkpoint_key, json.dumps(run.config),
        run.config_hash, run.owner, lease)


async def _run(conn: asyncpg.Connection, query: str, *args: object) -> Run | None:
    """The run `query` finds, detached."""
    row = await conn.fetchrow(query, *args)
    return driver.detached(Run, row) if row is not None else None


async def _answer(conn: asyncpg.Connection, event: BatchSyncRequested, reply: BatchSyncCompleted) -> Admission:
    """Queue `reply` for the request's reply address, keyed by its correlation id (no address: nobody asks)."""
    if event.reply_to:
        await insert_events(conn, [(event.reply_to, reply, event.correlation_id)])
    return Admission.ANSWERED


async def _wait_for_outcome(conn: asyncpg.Connection, run: Run, event: BatchSyncRequested) -> None:
    """A duplicate of an active run's request, with a reply address of its own, is answered at completion."""
    if not event.reply_to or event.correlation_id == run.correlation_id:
        return
    waiter = {"correlationId": event.correlation_id, "replyTo": event.reply_to}
    if waiter not in (run.waiters or []):
        await conn.execute("UPDATE runs SET waiters = $2::jsonb WHERE id = $1", run.id,
                           json.dumps([*(run.waiters or []), waiter]))


async def _reject(conn: asyncpg.Connection, event: BatchSyncRequested, code: ErrorCode, message: str) -> Admission:
    reply = rejection(event, code, message)
    await conn.execute("UPDATE request_ledger SET outcome = $2::jsonb WHERE request_id = $1", event.request_id,
                       json.dumps(reply.model_dump(mode="json")))
    return await _answer(conn, event, reply)

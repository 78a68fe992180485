"""Asking for a sync, a retry or a cancel: the decisions made before Kafka (by the API) and after it (by
the worker that reads the request).

404 and 409 are decided here, in one transaction holding the batch row lock, so two concurrent
HTTP requests can never both start a run. The PENDING run is committed before the request is
published, which is why the API can answer 202 with a run id even when `wait=0`.

On the worker's side, `admit` records the request in the ledger and decides, in one durable transaction,
whether to run it, answer it from the record (the reply row goes to the outbox in the same transaction)
or leave it to the worker that owns its run; only then is the request's offset committable.
"""

import uuid
from enum import StrEnum
from typing import Protocol

from sqlalchemy import delete, func, or_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.events import BatchSyncCompleted, BatchSyncRequested, ErrorCode, Trigger
from schemas.messages import BATCH_NOT_FAILED, BATCH_NOT_FOUND, BROKER, DATABASE, REQUEST_MISMATCH, unavailable
from schemas.status import ACTIVE, TERMINAL, RunStatus
from service.config import Settings
from service.db.failures import database_down
from service.db.models import Batch, RequestLedger, Run
from service.ports import BrokerUnavailable, SyncRequester
from service.runs import lifecycle
from service.runs.lifecycle import active_run, completed_from_run, latest_run, lease_from_now, new_run, rejection
from service.runs.outbox import add_event
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


async def _locked_batch(session: AsyncSession, batch_id: int) -> tuple[Batch | None, Run | None]:
    """The batch, row-locked until the transaction ends (so decisions about its runs are serial), and its
    active run if any."""
    batch = await session.get(Batch, batch_id, with_for_update=True)
    return batch, (await active_run(session, batch_id) if batch is not None else None)


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
        async with state.sessions.begin() as session:
            batch, running = await _locked_batch(session, batch_id)
            if batch is None:
                return BatchNotFound(batch_id)
            if running is not None:
                return AlreadyRunning(batch_id, running.id)
            resumed_from = None
            if trigger is Trigger.RETRY:
                resumed_from = await latest_run(session, batch_id)
                if resumed_from is None or resumed_from.status != RunStatus.FAILED:
                    return NotRetryable(batch_id)
            run = new_run(
                batch, request_id=request_id, correlation_id=correlation_id, reply_to=reply_to,
                trigger=trigger.value, requested_by=requested_by, owner=None,
                lease_until=lease_from_now(PENDING_GRACE_SECONDS), resumed_from=resumed_from,
            )
            session.add(run)
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

    async def claimed(self, session: AsyncSession, run: Run) -> None:
        """Read what the run needs inside the admission's transaction and keep it for `submit`."""
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
    same transaction also claims it (RUNNING) and reads its spec, which saves the claim's own transaction."""
    run_id = run_id_for(event.request_id)
    try:
        async with sessions.begin() as session:
            admission = await admit_request(session, event, worker_id, lease_seconds)
            if admission is Admission.SCHEDULE and claimer is not None and claimer.can_start(event.batch_id):
                await _claim_now(session, run_id, worker_id, lease_seconds, claimer)
            return admission
    except (DataError, IntegrityError) as error:
        if claimer is not None:
            claimer.forget(run_id)
        raise RequestRefused(f"refused by the state store: {type(error.orig).__name__}") from error
    except BaseException:
        if claimer is not None:
            claimer.forget(run_id)
        raise


async def _claim_now(
    session: AsyncSession, run_id: uuid.UUID, worker_id: str, lease_seconds: float, claimer: Claimer
) -> None:
    """Claim inside a savepoint: when another run of the batch is RUNNING the index refuses the claim, the
    savepoint alone rolls back and the run stays PENDING for the executor's usual claim."""
    try:
        async with session.begin_nested():
            run = await lifecycle.take(session, run_id, worker_id, lease_seconds)
    except lifecycle.ClaimBusy:
        return
    if run is not None:
        await claimer.claimed(session, run)


async def admit_request(
    session: AsyncSession, event: BatchSyncRequested, worker_id: str, lease_seconds: float
) -> Admission:
    """Record the request in the ledger, decide what to do with it and queue its answer if any (caller commits)."""
    ledger = await session.execute(
        insert(RequestLedger)
        .values(request_id=event.request_id, batch_id=event.batch_id, first_event_id=event.event_id)
        .on_conflict_do_update(
            index_elements=[RequestLedger.request_id],
            set_={"seen_count": RequestLedger.seen_count + 1, "last_seen_at": func.now()},
        )
        .returning(RequestLedger.outcome)
    )
    recorded_outcome = ledger.scalar_one()
    if recorded_outcome is not None:
        reply = BatchSyncCompleted.model_validate(recorded_outcome)
        return _answer(session, event, reply.model_copy(update={"correlation_id": event.correlation_id}))

    run_id = run_id_for(event.request_id)
    run = await session.get(Run, run_id, with_for_update=True)
    if run is not None:
        if run.batch_id != event.batch_id:
            return await _reject(session, event, ErrorCode.CONFIG_INVALID, REQUEST_MISMATCH)
        if run.status in TERMINAL:
            return _answer(session, event, completed_from_run(run, event.correlation_id))
        _wait_for_outcome(run, event)
        taken = await session.execute(  # the lease is judged on the database's clock (lifecycle.lease_from_now)
            update(Run).where(Run.id == run_id, or_(Run.owner.is_(None), Run.owner == worker_id,
                                                     Run.lease_until < func.now()))
            .values(owner=worker_id, lease_until=lease_from_now(lease_seconds)).returning(Run.id)
        )
        return Admission.SCHEDULE if taken.first() is not None else Admission.IGNORED

    batch = await session.get(Batch, event.batch_id)
    if batch is None:
        return await _reject(session, event, ErrorCode.BATCH_NOT_FOUND, BATCH_NOT_FOUND)
    resumed_from = None
    if event.resume_run_id is not None:
        resumed_from = await session.get(Run, event.resume_run_id)
        latest = await latest_run(session, batch.id)
        if (resumed_from is None or latest is None or latest.id != resumed_from.id
                or resumed_from.status != RunStatus.FAILED):
            # only the batch's latest run, and only a failed one: resuming an older one would write again
            # what later runs wrote, and move the incremental mark back
            return await _reject(session, event, ErrorCode.NOT_RETRYABLE, BATCH_NOT_FAILED)
    session.add(new_run(
        batch, request_id=event.request_id, correlation_id=event.correlation_id, reply_to=event.reply_to,
        trigger=event.trigger.value, requested_by=event.requested_by, owner=worker_id,
        lease_until=lease_from_now(lease_seconds), resumed_from=resumed_from,
    ))
    await session.execute(
        update(RequestLedger).where(RequestLedger.request_id == event.request_id).values(run_id=run_id)
    )
    return Admission.SCHEDULE


def _answer(session: AsyncSession, event: BatchSyncRequested, reply: BatchSyncCompleted) -> Admission:
    """Queue `reply` for the request's reply address, keyed by its correlation id (no address: nobody asks)."""
    if event.reply_to:
        add_event(session, event.reply_to, reply, key=event.correlation_id)
    return Admission.ANSWERED


def _wait_for_outcome(run: Run, event: BatchSyncRequested) -> None:
    """A duplicate of an active run's request, with a reply address of its own, is answered at completion."""
    if not event.reply_to or event.correlation_id == run.correlation_id:
        return
    waiter = {"correlationId": event.correlation_id, "replyTo": event.reply_to}
    if waiter not in (run.waiters or []):
        run.waiters = [*(run.waiters or []), waiter]


async def _reject(session: AsyncSession, event: BatchSyncRequested, code: ErrorCode, message: str) -> Admission:
    reply = rejection(event, code, message)
    await session.execute(
        update(RequestLedger).where(RequestLedger.request_id == event.request_id)
        .values(outcome=reply.model_dump(mode="json"))
    )
    return _answer(session, event, reply)

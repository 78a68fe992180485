"""Asking for a sync, a retry or a cancel: the decisions made before and after Kafka.

404 and 409 are decided here, in one transaction holding the batch row lock, so two concurrent
HTTP requests can never both start a run. The PENDING run is committed before the request is
published, which is why the API can answer 202 with a run id even when `wait=0`.
"""

import uuid
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.api import RunStatus
from schemas.events import BatchSyncRequested, ErrorCode, Trigger
from service.config import Settings
from service.db.failures import database_down
from service.db.models import Batch, RequestLedger, Run
from service.ports import BrokerUnavailable, SyncRequester
from service.runs.lifecycle import active_run, latest_run, new_run, rejection, utcnow
from service.runs.outcomes import (
    Accepted,
    AlreadyRunning,
    BatchNotFound,
    CancelOutcome,
    CancelRequested,
    Finished,
    NothingToCancel,
    NotRetryable,
    SyncOutcome,
    Unavailable,
)

PRODUCER = "batchsync-api"
DATABASE = "数据库"
BROKER = "消息队列"
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
                if resumed_from is None or resumed_from.status != RunStatus.FAILED.value:
                    return NotRetryable(batch_id)
            run = new_run(
                batch, request_id=request_id, correlation_id=correlation_id, reply_to=reply_to,
                trigger=trigger.value, requested_by=requested_by, owner=None,
                lease_until=utcnow() + timedelta(seconds=PENDING_GRACE_SECONDS), resumed_from=resumed_from,
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
                delete(Run).where(Run.id == run_id, Run.status == RunStatus.PENDING.value, Run.owner.is_(None))
                .returning(Run.id)
            )).first()
            if withdrawn is None:
                return False
            outcome = rejection(event, ErrorCode.BROKER_UNAVAILABLE, f"服务暂不可用：{BROKER}")
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
    """Flag the active run; its worker stops at the next chunk boundary and records who cancelled."""
    try:
        async with state.sessions.begin() as session:
            batch, running = await _locked_batch(session, batch_id)
            if batch is None:
                return BatchNotFound(batch_id)
            if running is None:
                return NothingToCancel(batch_id)
            await session.execute(
                update(Run).where(Run.id == running.id, Run.cancel_requested_by.is_(None))
                .values(cancel_requested_by=requested_by)
            )
            return CancelRequested(batch_id, running.id)
    except Exception as error:
        if database_down(error):
            return Unavailable(DATABASE)
        raise

"""The run lifecycle against the real state store: admission, claims, completion, leases, orphans."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from schemas.events import BatchSyncCompleted, BatchSyncRequested, ErrorCode, Trigger
from schemas.topics import Topics
from service.bootstrap import database
from service.config import Settings
from service.db import driver
from service.db.models import Batch, Outbox, RequestLedger, Run
from service.runs import lifecycle
from service.runs.requests import Admission, admit_request
from service.runs.snapshot import run_id_for
from tests.support.builders import state_batch

TOPICS = Topics("lifecycle.test")


@pytest.fixture(scope="module")
async def db(state_dsn):
    async with database(Settings(database_url=state_dsn)) as handle:
        yield handle


@pytest.fixture
async def batch_id(db) -> int:
    return await state_batch(db.sessions)


def request(batch_id: int, request_id: str | None = None) -> BatchSyncRequested:
    return BatchSyncRequested(correlation_id=str(uuid.uuid4()), batch_id=batch_id, producer="test",
                              request_id=request_id or "", requested_by="alice", trigger=Trigger.EVENT,
                              reply_to="replies.test")


@dataclass(frozen=True)
class Admitted:
    action: Admission
    run_id: uuid.UUID
    reply: BatchSyncCompleted | None = None


async def admit(db, event: BatchSyncRequested, worker: str = "w1") -> Admitted:
    """Admit like the worker does, and read back the reply the admission queued, if any."""
    async with driver.transaction(db.sessions) as conn:
        action = await admit_request(conn, event, worker, 10)
    reply = None
    if action is Admission.ANSWERED:
        async with db.sessions() as session:
            row = await session.scalar(select(Outbox).where(
                Outbox.topic == event.reply_to, Outbox.key == event.correlation_id.encode()))
        reply = BatchSyncCompleted.model_validate_json(row.value)
    return Admitted(action, run_id_for(event.request_id), reply)


async def test_a_new_request_is_scheduled_and_its_duplicate_is_answered_from_the_record(db, batch_id):
    event = request(batch_id)
    admission = await admit(db, event)
    assert admission.action is Admission.SCHEDULE
    assert await admit(db, event, worker="w2") == Admitted(Admission.IGNORED, admission.run_id)

    async with driver.transaction(db.sessions) as conn:
        run = await lifecycle.claim(conn, admission.run_id, "w1", 10)
        assert run is not None and run.status == "RUNNING"
    async with driver.transaction(db.sessions) as conn:
        reply = await lifecycle.complete(conn, admission.run_id, "w1", TOPICS, error_code=None,
                                         message="同步成功", records_read=5, records_written=5, chunks=1,
                                         start=(0, None))
    assert reply is not None and reply.success and reply.records_synced == 5

    duplicate = request(batch_id, event.request_id)
    answer = await admit(db, duplicate, worker="w2")
    assert answer.action is Admission.ANSWERED
    assert answer.reply.run_id == admission.run_id and answer.reply.correlation_id == duplicate.correlation_id
    async with db.sessions() as session:
        batch = await session.get(Batch, batch_id)
        assert (batch.status, batch.last_records_synced, batch.last_run_id) == ("SUCCESS", 5, admission.run_id)
        ledger = await session.get(RequestLedger, event.request_id)
        assert ledger.seen_count == 3
        rows = (await session.scalars(select(Outbox).where(Outbox.key.in_([str(batch_id).encode(),
                                                                           event.correlation_id.encode()])))).all()
        types = sorted((row.topic, row.headers["eventType"]) for row in rows)
        assert types == [(TOPICS.events, "BatchSyncCompleted"), (TOPICS.events, "BatchSyncStarted"),
                         ("replies.test", "BatchSyncCompleted")]


async def test_an_unknown_batch_is_answered_and_the_answer_is_recorded(db):
    event = request(99_999_999)
    first = await admit(db, event)
    again = await admit(db, request(99_999_999, event.request_id))
    assert first.action == again.action is Admission.ANSWERED
    assert first.reply.error_code == again.reply.error_code == ErrorCode.BATCH_NOT_FOUND


async def test_only_one_run_of_a_batch_can_be_running(db, batch_id):
    one, two = await admit(db, request(batch_id)), await admit(db, request(batch_id))
    async with driver.transaction(db.sessions) as conn:
        assert await lifecycle.claim(conn, one.run_id, "w1", 10) is not None
    with pytest.raises(lifecycle.ClaimBusy):
        async with driver.transaction(db.sessions) as conn:
            await lifecycle.claim(conn, two.run_id, "w1", 10)
    async with driver.transaction(db.sessions) as conn:
        await lifecycle.complete(conn, one.run_id, "w1", TOPICS, error_code=ErrorCode.SOURCE_TIMEOUT,
                                 message="连接超时")
    async with driver.transaction(db.sessions) as conn:
        assert await lifecycle.claim(conn, two.run_id, "w1", 10) is not None


async def test_a_worker_that_lost_its_lease_cannot_complete_the_run(db, batch_id):
    admission = await admit(db, request(batch_id))
    async with db.sessions.begin() as session:
        await session.execute(update(Run).where(Run.id == admission.run_id)
                              .values(lease_until=lifecycle.utcnow() - timedelta(seconds=1)))
    async with db.sessions.begin() as session:
        taken = await lifecycle.claim_orphans(session, "w2", 10, 100)
    assert admission.run_id in {run.id for run in taken}
    async with driver.transaction(db.sessions) as conn:
        assert await lifecycle.complete(conn, admission.run_id, "w1", TOPICS, error_code=None, message="x") is None
    async with db.sessions.begin() as session:
        assert await lifecycle.renew_leases(session, "w1", [admission.run_id], 10) == {}
        assert await lifecycle.renew_leases(session, "w2", [admission.run_id], 10) == {admission.run_id: None}


async def test_a_retry_inherits_the_checkpoint_key_and_config_of_the_failed_run(db, batch_id):
    failed = await admit(db, request(batch_id))
    async with driver.transaction(db.sessions) as conn:
        await lifecycle.claim(conn, failed.run_id, "w1", 10)
    async with driver.transaction(db.sessions) as conn:
        await lifecycle.complete(conn, failed.run_id, "w1", TOPICS, error_code=ErrorCode.TARGET_ERROR,
                                 message="boom")
    retry = request(batch_id)
    retry.resume_run_id = failed.run_id
    retry.trigger = Trigger.RETRY
    admission = await admit(db, retry)
    async with db.sessions() as session:
        original, resumed = await session.get(Run, failed.run_id), await session.get(Run, admission.run_id)
    assert resumed.checkpoint_key == original.checkpoint_key == original.id
    assert resumed.resumed_from_run_id == original.id and resumed.config_hash == original.config_hash

    not_failed = request(batch_id)
    not_failed.resume_run_id = admission.run_id
    answer = await admit(db, not_failed)
    assert answer.action is Admission.ANSWERED and answer.reply.error_code == ErrorCode.NOT_RETRYABLE


async def test_cancel_flags_reach_the_owner_through_lease_renewal(db, batch_id):
    admission = await admit(db, request(batch_id))
    async with db.sessions.begin() as session:
        await session.execute(update(Run).where(Run.id == admission.run_id).values(cancel_requested_by="bob"))
    async with db.sessions.begin() as session:
        assert await lifecycle.renew_leases(session, "w1", [admission.run_id], 10) == {admission.run_id: "bob"}
    async with driver.transaction(db.sessions) as conn:
        await lifecycle.claim(conn, admission.run_id, "w1", 10)
    async with driver.transaction(db.sessions) as conn:
        reply = await lifecycle.complete(conn, admission.run_id, "w1", TOPICS, error_code=ErrorCode.CANCELLED,
                                         message="同步已取消")
    assert isinstance(reply, BatchSyncCompleted) and reply.cancelled_by == "bob" and not reply.success


async def test_only_the_latest_failed_run_can_be_resumed(db, batch_id):
    failed = await admit(db, request(batch_id))
    async with driver.transaction(db.sessions) as conn:
        await lifecycle.claim(conn, failed.run_id, "w1", 10)
    async with driver.transaction(db.sessions) as conn:
        await lifecycle.complete(conn, failed.run_id, "w1", TOPICS, error_code=ErrorCode.TARGET_ERROR,
                                 message="boom")
    later = await admit(db, request(batch_id))
    async with driver.transaction(db.sessions) as conn:
        await lifecycle.claim(conn, later.run_id, "w1", 10)
    async with driver.transaction(db.sessions) as conn:
        await lifecycle.complete(conn, later.run_id, "w1", TOPICS, error_code=None, message="同步成功")
    stale = request(batch_id)
    stale.resume_run_id = failed.run_id
    stale.trigger = Trigger.RETRY
    answer = await admit(db, stale)
    assert answer.action is Admission.ANSWERED and answer.reply.error_code == ErrorCode.NOT_RETRYABLE


async def test_a_duplicate_of_an_active_request_is_answered_when_the_run_completes(db, batch_id):
    first = request(batch_id)
    admission = await admit(db, first)
    duplicate = request(batch_id, first.request_id)
    duplicate.reply_to = "other.replies"
    assert (await admit(db, duplicate, worker="w2")).action is Admission.IGNORED
    async with driver.transaction(db.sessions) as conn:
        await lifecycle.claim(conn, admission.run_id, "w1", 10)
    async with driver.transaction(db.sessions) as conn:
        await lifecycle.complete(conn, admission.run_id, "w1", TOPICS, error_code=None, message="同步成功")
    async with db.sessions() as session:
        replies = (await session.scalars(select(Outbox).where(Outbox.topic == "other.replies"))).all()
    assert [row.key for row in replies] == [duplicate.correlation_id.encode()]
    assert BatchSyncCompleted.model_validate_json(replies[0].value).run_id == admission.run_id

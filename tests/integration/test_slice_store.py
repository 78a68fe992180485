"""Slices in the real state store (service/slicing/store.py): a plan stored once with a request per slice, claims
that one worker at a time wins, leases renewed and judged on the database's clock, a cancel that stops every
slice not yet started, orphans taken over, and a retry that carries succeeded slices over."""

import uuid

import pytest
from sqlalchemy import select, update

from schemas.events import BatchSliceCompleted, BatchSyncRequested, ErrorCode
from schemas.status import RunStatus
from schemas.topics import Topics
from service.bootstrap import database
from service.config import Settings
from service.db import driver
from service.db.models import Batch, Outbox, Run, RunSlice
from service.runs import lifecycle
from service.slicing import store
from service.slicing.ranges import SliceRange
from tests.support.builders import state_batch

TOPICS = Topics("slices.test")
RANGES = [SliceRange("id", "int", None, 100, nulls=True), SliceRange("id", "int", 100, 200),
          SliceRange("id", "int", 200, None)]


@pytest.fixture(scope="module")
async def db(state_dsn):
    async with database(Settings(database_url=state_dsn)) as handle:
        yield handle


async def running_run(db, *, resumed_from: Run | None = None) -> Run:
    """A split run RUNNING on worker `coord`, as its coordinator holds it."""
    batch_id = resumed_from.batch_id if resumed_from else await state_batch(db.sessions)
    async with db.sessions.begin() as session:
        batch = await session.get(Batch, batch_id)
        run = lifecycle.new_run(batch, request_id=str(uuid.uuid4()), correlation_id="c", reply_to=None,
                                trigger="http", requested_by="alice", owner="coord",
                                lease_until=lifecycle.lease_from_now(30), resumed_from=resumed_from)
        session.add(run)
    async with driver.transaction(db.sessions) as conn:
        taken = await lifecycle.take(conn, run.id, "coord", 30)
    assert taken is not None
    return taken


async def outbox_of(db, run: Run, kind: type) -> list:
    async with db.sessions.begin() as session:
        rows = (await session.scalars(select(Outbox).order_by(Outbox.id))).all()
    events = [kind.model_validate_json(row.value) for row in rows if f'"{kind.__name__}"'.encode() in row.value]
    return [e for e in events if e.run_id == run.id]


async def test_a_plan_is_stored_once_with_one_request_per_slice_keyed_apart(db):
    run = await running_run(db)
    async with db.sessions.begin() as session:
        assert await store.store_plan(session, run, RANGES, TOPICS, "coord", grace=30)
    async with db.sessions.begin() as session:
        assert not await store.store_plan(session, run, RANGES, TOPICS, "coord", grace=30), "planned twice"
        slices = await store.slices_of(session, run.id)
        keys = {row.key for row in (await session.scalars(select(Outbox).where(Outbox.topic == TOPICS.requested)))
                .all() if row.key and str(run.id).encode() in row.key}
    assert [SliceRange.from_json(s.range) for s in slices] == RANGES
    assert {s.status for s in slices} == {RunStatus.PENDING}
    requests = await outbox_of(db, run, BatchSyncRequested)
    assert sorted(r.slice for r in requests) == [0, 1, 2]
    assert {r.request_id for r in requests} == {store.request_id_of(run.id, n) for n in range(3)}
    assert len(keys) == 3, "each slice's request has its own key, so the group spreads them"


async def test_one_worker_at_a_time_wins_a_slice_and_a_lapsed_lease_lets_another_take_it_over(db):
    run = await running_run(db)
    async with db.sessions.begin() as session:
        await store.store_plan(session, run, RANGES, TOPICS, "coord", grace=30)
    async with db.sessions.begin() as session:
        assert (await store.claim(session, run.id, 1, "w1", 30)) is not None
    async with db.sessions.begin() as session:
        assert await store.claim(session, run.id, 1, "w2", 30) is None, "a live lease is respected"
        renewed = await store.renew(session, "w1", [(run.id, 1), (run.id, 2)], 30)
    assert renewed == {(run.id, 1): None}, "only slices still ours are renewed"
    async with db.sessions.begin() as session:
        await session.execute(update(RunSlice).where(RunSlice.run_id == run.id, RunSlice.slice == 1)
                              .values(lease_until=lifecycle.lease_from_now(-1)))
        taken = await store.claim_orphans(session, "w2", 30, 10)
    assert (run.id, 1, run.batch_id) in taken
    async with db.sessions.begin() as session:
        claimed = await store.claim(session, run.id, 1, "w2", 30)
        assert claimed is not None and claimed.attempts == 2 and claimed.worker_id == "w2"
        assert await store.renew(session, "w1", [(run.id, 1)], 30) == {}, "the old owner lost it"
        assert await store.record_progress(session, run.id, 1, "w1", chunks=1, records_read=1, records_written=1,
                                           records_rejected=0) is False


async def test_a_cancel_ends_pending_slices_refuses_new_claims_and_reaches_running_ones(db):
    run = await running_run(db)
    async with db.sessions.begin() as session:
        await store.store_plan(session, run, RANGES, TOPICS, "coord", grace=30)
        await store.claim(session, run.id, 0, "w1", 30)
    async with db.sessions.begin() as session:
        await session.execute(update(Run).where(Run.id == run.id).values(cancel_requested_by="bob"))
    async with db.sessions.begin() as session:
        assert await store.renew(session, "w1", [(run.id, 0)], 30) == {(run.id, 0): "bob"}
        assert await store.claim(session, run.id, 1, "w2", 30) is None, "no slice starts once cancelled"
        assert await store.cancel_pending(session, run, "cancelled", TOPICS) == 2
        outcome = store.SliceOutcome(RunStatus.CANCELLED, 10, 10, 0, 1, "cancelled", ErrorCode.CANCELLED)
        assert await store.complete(session, run, 0, "w1", outcome, TOPICS)
    async with db.sessions.begin() as session:
        tally = await store.tally(session, run.id)
    assert tally.ended and not tally.succeeded and tally.by_status == {RunStatus.CANCELLED: 3}
    ended = await outbox_of(db, run, BatchSliceCompleted)
    assert sorted(e.slice for e in ended) == [0, 1, 2]
    assert len({e.event_id for e in ended}) == 3 and all(e.error_code is ErrorCode.CANCELLED for e in ended)


async def test_a_retry_carries_succeeded_slices_over_and_requests_only_the_others(db):
    failed = await running_run(db)
    async with db.sessions.begin() as session:
        await store.store_plan(session, failed, RANGES, TOPICS, "coord", grace=30)
        for number, status in ((0, RunStatus.SUCCESS), (1, RunStatus.FAILED), (2, RunStatus.SUCCESS)):
            await store.claim(session, failed.id, number, "w1", 30)
            await store.complete(session, failed, number, "w1",
                                 store.SliceOutcome(status, 100, 100, 0, 2, "m", None), TOPICS)
    async with driver.transaction(db.sessions) as conn:
        await lifecycle.complete(conn, failed.id, "coord", TOPICS, error_code=ErrorCode.TARGET_ERROR, message="m")
    retry = await running_run(db, resumed_from=failed)
    async with db.sessions.begin() as session:
        assert await store.carry_plan(session, retry, failed.id, TOPICS, "coord", grace=30)
        slices = await store.slices_of(session, retry.id)
        tally = await store.tally(session, retry.id)
    assert [(s.slice, s.status, s.carried_from_run_id) for s in slices] == [
        (0, RunStatus.SUCCESS, failed.id), (1, RunStatus.PENDING, None), (2, RunStatus.SUCCESS, failed.id)]
    assert tally.records_written == 200, "carried slices count toward the sums"
    assert [r.slice for r in await outbox_of(db, retry, BatchSyncRequested)] == [1]
    assert retry.checkpoint_key == failed.checkpoint_key, "a retry's slices find their predecessors' checkpoints"

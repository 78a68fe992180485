"""The projector folds the events topic into run_history exactly once, with its offsets in PostgreSQL."""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select

from consumers.projector import Projector
from producers.publisher import Publisher
from schemas.events import BatchSyncCompleted, BatchSyncProgress, BatchSyncStarted, ErrorCode, Trigger
from schemas.wire import encode
from service.config import Settings
from service.db.engine import make_engine, make_sessionmaker
from service.db.models import ConsumerOffset, RunHistory
from service.history.projection import clear, project, projector_group

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run_events(batch_id: int, run_id: uuid.UUID, *, outcome: str) -> list:
    common = {"batch_id": batch_id, "run_id": run_id, "correlation_id": f"c-{run_id}", "producer": "test"}
    started = BatchSyncStarted(**common, trigger=Trigger.HTTP, requested_by="alice", started_at=T0,
                               config_hash="h1")
    progress = [
        BatchSyncProgress(**common, chunk=n, records_read=10 * n, records_written=10 * n, elapsed_ms=n,
                          records_per_second=1.0)
        for n in (1, 2)
    ]
    if outcome == "success":
        done = BatchSyncCompleted(**common, success=True, message="同步成功", sync_time=T0 + timedelta(seconds=3),
                                  records_synced=20, duration_ms=3000)
    else:
        done = BatchSyncCompleted(**common, success=False, message="已取消", sync_time=T0 + timedelta(seconds=2),
                                  records_synced=10, duration_ms=2000, error_code=ErrorCode.CANCELLED,
                                  cancelled_by="bob")
    return [started, *progress, done]


@pytest.fixture
async def sessions(state_dsn):
    engine = make_engine(state_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    yield make_sessionmaker(engine)
    await engine.dispose()


def settings_for(broker, state_dsn) -> Settings:
    return Settings(database_url=state_dsn, kafka_bootstrap=broker.bootstrap,
                    topic_prefix=f"pj{uuid.uuid4().hex[:8]}", events_partitions=3, session_timeout_ms=3000)


async def history(sessions, run_id) -> RunHistory | None:
    async with sessions() as session:
        return await session.get(RunHistory, run_id)


async def stored_offsets(sessions, settings) -> int:
    async with sessions() as session:
        rows = await session.scalars(select(ConsumerOffset.next_offset).where(
            ConsumerOffset.group_id == projector_group(settings.topic_prefix)))
        return sum(rows.all())


async def wait_for(predicate, seconds: float = 15.0) -> None:
    async with asyncio.timeout(seconds):
        while not await predicate():
            await asyncio.sleep(0.05)


def snapshot(row: RunHistory) -> dict:
    return {c: getattr(row, c) for c in RunHistory.__table__.columns.keys()}


async def test_projects_runs_and_rereading_changes_nothing(broker, state_dsn, sessions) -> None:
    settings = settings_for(broker, state_dsn)
    batch_id = random.randint(10**6, 10**9)
    ok_run, cancelled_run = uuid.uuid4(), uuid.uuid4()
    events = run_events(batch_id, ok_run, outcome="success") + run_events(batch_id + 1, cancelled_run,
                                                                            outcome="cancelled")
    publisher = Publisher(settings)
    await publisher.start()
    for event in events:
        await publisher.send(settings.topics.events, encode(event), key=str(event.batch_id).encode())

    task = asyncio.create_task(Projector(settings, sessions, publisher).run())
    try:
        await wait_for(lambda: _offsets_reach(sessions, settings, len(events)))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    ok = await history(sessions, ok_run)
    assert (ok.status, ok.batch_id, ok.trigger, ok.requested_by, ok.started_at) == (
        "SUCCESS", batch_id, "http", "alice", T0)
    assert (ok.records_synced, ok.records_read, ok.chunks, ok.duration_ms, ok.success) == (20, 20, 2, 3000, True)
    assert (ok.finished_at, ok.message, ok.config_hash, ok.events) == (T0 + timedelta(seconds=3), "同步成功", "h1", 4)
    cancelled = await history(sessions, cancelled_run)
    assert (cancelled.status, cancelled.error_code, cancelled.cancelled_by, cancelled.success) == (
        "CANCELLED", "CANCELLED", "bob", False)
    before = [snapshot(ok), snapshot(cancelled)]

    async with sessions.begin() as session:
        await session.execute(delete(ConsumerOffset).where(
            ConsumerOffset.group_id == projector_group(settings.topic_prefix)))
    task = asyncio.create_task(Projector(settings, sessions, publisher).run())
    try:
        await wait_for(lambda: _offsets_reach(sessions, settings, len(events)))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.stop()
    after = [snapshot(await history(sessions, ok_run)), snapshot(await history(sessions, cancelled_run))]
    assert after == before


async def _offsets_reach(sessions, settings, total: int) -> bool:
    return await stored_offsets(sessions, settings) >= total


async def test_offsets_in_postgres_advance_with_the_projection(broker, state_dsn, sessions) -> None:
    settings = settings_for(broker, state_dsn)
    batch_id = random.randint(10**6, 10**9)
    first, second = run_events(batch_id, uuid.uuid4(), outcome="success"), run_events(
        batch_id, uuid.uuid4(), outcome="success")
    publisher = Publisher(settings)
    await publisher.start()
    projector = Projector(settings, sessions, publisher)
    task = asyncio.create_task(projector.run())
    try:
        for event in first:
            await publisher.send(settings.topics.events, encode(event), key=str(batch_id).encode())
        await wait_for(lambda: _offsets_reach(sessions, settings, 4))
        assert (await history(sessions, first[0].run_id)).status == "SUCCESS"
        assert await history(sessions, second[0].run_id) is None
        for event in second:
            await publisher.send(settings.topics.events, encode(event), key=str(batch_id).encode())
        await wait_for(lambda: _offsets_reach(sessions, settings, 8))
        assert (await history(sessions, second[0].run_id)).events == 4
        assert await stored_offsets(sessions, settings) == 8
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.stop()


async def test_projection_is_idempotent_and_monotonic(sessions) -> None:
    batch_id = random.randint(10**6, 10**9)
    run_id = uuid.uuid4()
    started, p1, p2, done = run_events(batch_id, run_id, outcome="success")
    async with sessions.begin() as session:
        assert await project(session, done)
        assert await project(session, p2)
        assert await project(session, started)
        assert await project(session, p1)
        assert not await project(session, done)
        assert not await project(session, started)
    row = await history(sessions, run_id)
    assert (row.status, row.records_synced, row.chunks, row.events, row.trigger) == ("SUCCESS", 20, 2, 4, "http")
    assert (row.finished_at, row.started_at) == (T0 + timedelta(seconds=3), T0)


async def test_progress_only_raises_counts(sessions) -> None:
    batch_id = random.randint(10**6, 10**9)
    run_id = uuid.uuid4()
    started, p1, p2, _ = run_events(batch_id, run_id, outcome="success")
    async with sessions.begin() as session:
        for event in (started, p2, p1):
            await project(session, event)
    row = await history(sessions, run_id)
    assert (row.status, row.records_read, row.records_synced, row.chunks) == ("RUNNING", 20, 20, 2)


async def test_clear_wipes_projection_and_projector_offsets(sessions) -> None:
    run_id = uuid.uuid4()
    group = projector_group(f"clr{uuid.uuid4().hex[:6]}")
    started = run_events(1, run_id, outcome="success")[0]
    async with sessions.begin() as session:
        await project(session, started)
        session.add(ConsumerOffset(group_id=group, topic="x", partition=0, next_offset=5))
        session.add(ConsumerOffset(group_id=f"{group}-worker", topic="x", partition=0, next_offset=5))
    async with sessions.begin() as session:
        await clear(session)
    async with sessions() as session:
        assert await session.get(RunHistory, run_id) is None
        assert await session.get(ConsumerOffset, (group, "x", 0)) is None
        assert await session.get(ConsumerOffset, (f"{group}-worker", "x", 0)) is not None
    async with sessions.begin() as session:
        assert await project(session, started)

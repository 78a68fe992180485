"""What the state store keeps only for a while (issue 14 item 5): answered ledger rows and the projected-event
ids of settled runs are pruned after the retention; runs, run history and anything still needed are kept, and
a settled run's events read again never change its history."""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, null, select, update

from consumers.projector import Projector
from producers.publisher import Publisher
from schemas.wire import encode
from service.db.engine import make_engine, make_sessionmaker
from service.db.models import ConsumerOffset, ProjectedEvent, RequestLedger, RunHistory
from service.history.projection import projector_group
from service.runs.retention import prune
from tests.integration.test_projector import run_events, settings_for, stored_offsets

RETENTION = timedelta(days=8)


@pytest.fixture
async def sessions(state_dsn):
    engine = make_engine(state_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    yield make_sessionmaker(engine)
    await engine.dispose()


def ledger_row(age: timedelta, *, answered: bool) -> RequestLedger:
    seen = datetime.now(UTC) - age
    return RequestLedger(request_id=str(uuid.uuid4()), batch_id=1, first_event_id=uuid.uuid4(),
                         outcome={"success": True} if answered else null(), first_seen_at=seen, last_seen_at=seen)


def history_row(age: timedelta, status: str) -> RunHistory:
    return RunHistory(run_id=uuid.uuid4(), batch_id=1, status=status, finished_at=datetime.now(UTC) - age, events=2)


async def exists(sessions, model, key) -> bool:
    async with sessions() as session:
        return await session.get(model, key) is not None


async def test_prune_drops_old_answered_requests_and_settled_event_ids_and_keeps_the_rest(sessions) -> None:
    old_answered = ledger_row(timedelta(days=9), answered=True)
    old_open = ledger_row(timedelta(days=9), answered=False)
    recent = ledger_row(timedelta(days=1), answered=True)
    settled = history_row(timedelta(days=9), "SUCCESS")
    fresh = history_row(timedelta(days=1), "FAILED")
    stuck = history_row(timedelta(days=9), "RUNNING")  # no Completed yet: its events may still come
    events = {run.run_id: [uuid.uuid4(), uuid.uuid4()] for run in (settled, fresh, stuck)}
    async with sessions.begin() as session:
        session.add_all([old_answered, old_open, recent, settled, fresh, stuck])
        session.add_all([ProjectedEvent(event_id=e, run_id=run_id) for run_id, ids in events.items() for e in ids])

    pruned = await prune(sessions, RETENTION)

    assert pruned.ledger >= 1 and pruned.projected >= 2
    assert not await exists(sessions, RequestLedger, old_answered.request_id)
    assert await exists(sessions, RequestLedger, old_open.request_id), "an unanswered request is never forgotten"
    assert await exists(sessions, RequestLedger, recent.request_id)
    assert not any([await exists(sessions, ProjectedEvent, e) for e in events[settled.run_id]])
    assert all([await exists(sessions, ProjectedEvent, e) for e in events[fresh.run_id] + events[stuck.run_id]])
    assert all([await exists(sessions, RunHistory, run.run_id) for run in (settled, fresh, stuck)])
    assert (await prune(sessions, RETENTION)).ledger == 0, "pruning again finds nothing older"


async def test_a_settled_run_read_again_after_its_event_ids_were_pruned_keeps_its_history(broker, state_dsn,
                                                                                          sessions) -> None:
    """Without the settled rule the projector would count every event of the run a second time (the
    `events` column), and audit replay would call the history wrong."""
    # The projector reads every partition alone, as `up` runs it: each read starts at once instead of after the 3 s
    # a consumer group takes to form on the test broker; its positions are the stored ones either way.
    settings = settings_for(broker, state_dsn).model_copy(update={"partition_assignment": "all"})
    batch_id = random.randint(10**6, 10**9)
    run_id = uuid.uuid4()
    events = run_events(batch_id, run_id, outcome="success")  # finished in January 2026: long settled
    publisher = Publisher(settings)
    await publisher.start()
    try:
        for event in events:
            await publisher.send(settings.topics.events, encode(event), key=str(batch_id).encode())
        await project_until(settings, sessions, publisher, len(events))
        async with sessions() as session:
            before = await session.get(RunHistory, run_id)
            assert before is not None and before.events == len(events)
        assert (await prune(sessions, RETENTION)).projected >= len(events)
        async with sessions.begin() as session:  # read the whole log again, as after a reset to the earliest
            await session.execute(update(ConsumerOffset).where(
                ConsumerOffset.group_id == projector_group(settings.topic_prefix)).values(next_offset=0))
        await project_until(settings, sessions, publisher, len(events))
    finally:
        await publisher.stop()
    async with sessions() as session:
        after = await session.get(RunHistory, run_id)
        assert after is not None and after.events == len(events)
        assert await session.scalar(select(func.count()).select_from(ProjectedEvent)
                                    .where(ProjectedEvent.run_id == run_id)) == 0


async def project_until(settings, sessions, publisher, total: int) -> None:
    task = asyncio.create_task(Projector(settings, sessions, publisher).run())
    try:
        async with asyncio.timeout(20):
            while await stored_offsets(sessions, settings) < total:
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

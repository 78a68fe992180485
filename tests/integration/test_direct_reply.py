"""A run's reply leaves right after its completion commits, ahead of the outbox relay; its outbox row is kept and
marked published, unless the relay holds it already (then the relay sends it again and readers dedupe by
eventId). On the real state store; the run here is admitted and claimed in one transaction, as the sync
worker does it."""

import asyncio
import uuid

import pytest
from sqlalchemy import select

from producers.outbox_relay import OutboxRelay
from schemas.events import BatchSyncCompleted, BatchSyncRequested, Trigger
from service.bootstrap import database
from service.config import Settings
from service.connectors.registry import REGISTRY
from service.db import driver
from service.db.models import Outbox, Run
from service.ports import BrokerUnavailable
from service.runs import executor as executor_module
from service.runs.executor import RunExecutor
from service.runs.lifecycle import utcnow
from service.runs.outbox import SqlOutbox, add_event, mark_published
from service.runs.requests import Admission, admit
from service.runs.snapshot import run_id_for
from service.sync.model import RunResult
from tests.support.builders import state_batch


class Notifier:
    def __init__(self) -> None:
        self.calls = 0

    def notify(self) -> None:
        self.calls += 1


class Sender:
    """The ReplySender: records what it was handed and when (the relay's notify count at that moment)."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.sent: list[tuple[str, bytes | None, bytes, int]] = []
        self.arrived = asyncio.Event()

    async def send_now(self, messages) -> list[int]:
        self.sent += [(m.topic, m.key, m.value, self.notifier.calls) for m in messages]
        self.arrived.set()
        return [m.id for m in messages]


async def engine_stand_in(spec, observer, **_):  # the engine is not under test here
    await observer.on_start(0, None)
    return RunResult(records_read=3, records_written=3, chunks=1, resumed_from_chunk=0)


@pytest.fixture(scope="module")
async def db(state_dsn):
    async with database(Settings(database_url=state_dsn)) as handle:
        yield handle


async def test_the_reply_is_sent_at_once_and_its_outbox_row_is_kept_as_published(db, state_dsn):
    notifier = Notifier()
    sender = Sender(notifier)
    executor = RunExecutor(Settings(database_url=state_dsn, topic_prefix="direct.test"), db.sessions, notifier,
                           "w1", REGISTRY, execute=engine_stand_in, sender=sender)
    event = BatchSyncRequested(correlation_id=str(uuid.uuid4()), batch_id=await state_batch(db.sessions),
                               producer="test", requested_by="t", trigger=Trigger.HTTP, reply_to="direct.replies")
    assert await admit(db.sessions, event, "w1", 30, claimer=executor) is Admission.SCHEDULE
    run_id = run_id_for(event.request_id)
    async with db.sessions() as session:
        assert (await session.get(Run, run_id)).status == "RUNNING"  # claimed by the admission itself
    executor.submit(run_id, event.batch_id)
    await asyncio.wait_for(sender.arrived.wait(), 10)
    async with asyncio.timeout(10):
        while notifier.calls == 0:  # the relay is woken once the sent reply is marked
            await asyncio.sleep(0.01)
    await executor.stop()

    [(topic, key, value, relay_woken)] = sender.sent
    reply = BatchSyncCompleted.model_validate_json(value)
    assert (topic, key, reply.run_id, reply.success, reply.records_synced) == (
        "direct.replies", event.correlation_id.encode(), run_id, True, 3)
    assert relay_woken == 0, "sent before the relay was woken"
    async with db.sessions() as session:
        kept = (await session.scalars(select(Outbox).where(Outbox.key == event.correlation_id.encode()))).all()
    assert [(row.topic, row.value, row.published_at is not None) for row in kept] == [("direct.replies", value, True)]
    assert notifier.calls == 1  # the relay still publishes the Completed event to the audit log


async def test_a_row_the_relay_holds_is_left_to_it(db):
    async with db.sessions.begin() as session:
        row = add_event(session, "direct.replies", BatchSyncCompleted(
            correlation_id="c", batch_id=1, producer="test", success=True, message="", sync_time=utcnow()), key="c")
    store = SqlOutbox(db.sessions)
    async with store.claim(1000) as claim:  # the relay's claim, open while the worker marks
        assert row.id in [m.id for m in claim.messages]
        async with driver.transaction(db.sessions) as conn:
            await mark_published(conn, [row.id])  # does not wait for the relay's lock
        await claim.published([])
    async with db.sessions() as session:
        assert (await session.get(Outbox, row.id)).published_at is None


class DownPublisher:
    async def send_many(self, messages):
        raise BrokerUnavailable("broker down")


class HalfPublisher:
    async def send_many(self, messages):
        return [None if topic == "a" else ValueError("too large") for topic, *_ in messages]


class RefusingPublisher:
    def __init__(self) -> None:
        self.handed: list[str] = []

    async def send_many(self, messages):
        self.handed += [topic for topic, *_ in messages]
        return [ValueError("too large") for _ in messages]


class Row:
    def __init__(self, row_id: int, topic: str) -> None:
        self.id, self.topic, self.key, self.value, self.headers = row_id, topic, b"k", b"{}", {}


async def test_only_acknowledged_rows_count_as_sent():
    rows = [Row(1, "a"), Row(2, "b")]
    assert await OutboxRelay(store=None, publisher=DownPublisher()).send_now(rows) == []  # type: ignore[arg-type]
    refusing = RefusingPublisher()
    assert await OutboxRelay(store=None, publisher=refusing).send_now(rows) == []  # type: ignore[arg-type]
    assert refusing.handed == ["a", "b"]
    assert await OutboxRelay(store=None, publisher=HalfPublisher()).send_now(rows) == [1]  # type: ignore[arg-type]


class StuckSender(Sender):
    async def send_now(self, messages) -> list[int]:
        self.arrived.set()
        await asyncio.Event().wait()  # a broker that never acknowledges
        return []


async def test_a_stuck_direct_send_is_left_to_the_relay(db, state_dsn, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(executor_module, "DIRECT_REPLY_SECONDS", 0.2)
    notifier = Notifier()
    executor = RunExecutor(Settings(database_url=state_dsn, topic_prefix="direct.test"), db.sessions, notifier,
                           "w1", REGISTRY, execute=engine_stand_in, sender=StuckSender(notifier))
    event = BatchSyncRequested(correlation_id=str(uuid.uuid4()), batch_id=await state_batch(db.sessions),
                               producer="test", requested_by="t", trigger=Trigger.HTTP, reply_to="direct.replies")
    assert await admit(db.sessions, event, "w1", 30, claimer=executor) is Admission.SCHEDULE
    executor.submit(run_id_for(event.request_id), event.batch_id)
    try:
        async with asyncio.timeout(5):
            while notifier.calls == 0:  # the relay is woken all the same, without waiting for the broker
                await asyncio.sleep(0.01)
    finally:
        await executor.stop()
    async with db.sessions() as session:
        [row] = (await session.scalars(select(Outbox).where(Outbox.key == event.correlation_id.encode()))).all()
    assert row.published_at is None, "not acknowledged: the relay publishes it"

"""A topic that gains partitions under a running loop that assigns partitions itself (no group: the reply
listener, the live feed; the solo shape of `up`) is followed: records on the new partitions are read, and the old
partitions keep their positions. A group rebalances on its own; these loops looked at the partitions once.

noida-db grows a topic in place (CreatePartitions); Tansu cannot (its memory-only restart instead auto-creates our
topics with 4 partitions), so on Tansu the topic is deleted and created again with more partitions."""

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka.admin import NewPartitions, NewTopic

from consumers.loop import ConsumeLoop, PerRecord, Record, Subscription
from service.config import Settings
from service.db.engine import make_engine, make_sessionmaker
from service.history.offsets import PgOffsets, store_offsets
from service.positions import Position
from tests.contract.cases.kafka import admin_client, create_topic, publish
from tests.support.brokers import RunningBroker, noida

pytestmark = pytest.mark.slow

FOLLOWED_WITHIN = 12.0
"""Seconds: the client's metadata age (3 s) plus the loop's check cadence (5 s), plus a fetch, with room."""


@pytest.fixture(scope="module")
def noida_broker() -> Iterator[RunningBroker]:
    with noida() as running:
        yield running


class Seen:
    """What a handler was given, by (partition, offset), with when."""

    def __init__(self) -> None:
        self.records: list[tuple[int, int, bytes | None]] = []
        self.at: dict[tuple[int, int], float] = {}

    async def __call__(self, record: Record) -> None:
        self.records.append((record.partition, record.offset, record.value))
        self.at.setdefault((record.partition, record.offset), time.monotonic())

    def values(self) -> list[bytes | None]:
        return [value for _, _, value in self.records]

    async def wait_for(self, *values: bytes, within: float) -> None:
        async with asyncio.timeout(within):
            while not set(values) <= set(self.values()):
                await asyncio.sleep(0.05)


async def grow(bootstrap: str, topic: str, partitions: int) -> None:
    async with admin_client(bootstrap) as admin:
        result = await admin.create_partitions({topic: NewPartitions(partitions)})
        assert all(error == 0 for _, error, _ in result.topic_errors), result


async def recreate(bootstrap: str, topic: str, partitions: int) -> None:
    async with admin_client(bootstrap) as admin:
        await admin.delete_topics([topic])
        await asyncio.sleep(0.3)
        await admin.create_topics([NewTopic(topic, partitions, 1)])


def gained(caplog: pytest.LogCaptureFixture, topic: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.INFO and topic in r.getMessage() and "gained partitions" in r.getMessage()]


async def started(loop: ConsumeLoop) -> asyncio.Task[None]:
    task = asyncio.create_task(loop.run())
    async with asyncio.timeout(20):
        await loop.ready.wait()
    return task


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_group_less_loop_reads_the_partitions_its_topic_gains(
        noida_broker: RunningBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="consumers.loop")
    bootstrap, topic = noida_broker.bootstrap, f"grow-replies-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, 3)
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=f"grow{uuid.uuid4().hex[:6]}")
    seen = Seen()
    loop = ConsumeLoop(settings, Subscription(name="reply listener", topic=topic, group_id=None,
                                              fetch_max_wait_ms=20, ensure_topics=False), PerRecord(seen))
    await publish(bootstrap, topic, b"before the loop", partition=0)  # at the end: never read
    task = await started(loop)
    try:
        await publish(bootstrap, topic, b"old partition", partition=0)
        await seen.wait_for(b"old partition", within=5)
        await grow(bootstrap, topic, 5)
        grown = time.monotonic()
        await publish(bootstrap, topic, b"new partition 4", partition=4)
        await publish(bootstrap, topic, b"new partition 3", partition=3)
        await seen.wait_for(b"new partition 4", b"new partition 3", within=FOLLOWED_WITHIN)
        await publish(bootstrap, topic, b"old partition after", partition=1)
        await seen.wait_for(b"old partition after", within=5)
    finally:
        await stopped(task)
    logging.getLogger(__name__).warning("partition 4 read %.1fs after the topic grew", seen.at[(4, 0)] - grown)
    # the old partitions kept their positions (none read again from its beginning), the new ones from theirs
    assert sorted(seen.records) == [(0, 1, b"old partition"), (1, 0, b"old partition after"),
                                    (3, 0, b"new partition 3"), (4, 0, b"new partition 4")]
    lines = gained(caplog, topic)
    assert len(lines) == 1 and "[3, 4]" in lines[0], lines


async def test_a_solo_loop_reads_the_partitions_its_topic_gains_from_their_stored_offsets(
        noida_broker: RunningBroker, state_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="consumers.loop")
    bootstrap, topic = noida_broker.bootstrap, f"grow-requests-{uuid.uuid4().hex[:8]}"
    group = f"grow-worker-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, 3)
    engine = make_engine(state_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    sessions = make_sessionmaker(engine)
    offsets = PgOffsets(sessions, group, topic)
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=f"grow{uuid.uuid4().hex[:6]}",
                        partition_assignment="all")
    seen = Seen()
    loop = ConsumeLoop(settings, Subscription(name="sync worker", topic=topic, group_id=group, fetch_max_wait_ms=20,
                                              ensure_topics=False), PerRecord(seen, offsets))
    try:
        for partition in range(3):
            await publish(bootstrap, topic, f"request {partition}".encode(), partition=partition)
        task = await started(loop)
        try:
            await seen.wait_for(b"request 0", b"request 1", b"request 2", within=10)
            async with sessions.begin() as session:  # a position kept for partition 4 (as if read there before)
                await store_offsets(session, group, topic, {4: Position(1)})
            await grow(bootstrap, topic, 5)
            grown = time.monotonic()
            # offset 0: before the stored position
            await publish(bootstrap, topic, b"request 4 already done", partition=4)
            await publish(bootstrap, topic, b"request 4", partition=4)
            await publish(bootstrap, topic, b"request 3", partition=3)
            await seen.wait_for(b"request 4", b"request 3", within=FOLLOWED_WITHIN)
            await publish(bootstrap, topic, b"request 0 after", partition=0)
            await seen.wait_for(b"request 0 after", within=5)
        finally:
            await stopped(task)
        stored = await offsets.load()
    finally:
        await engine.dispose()
    logging.getLogger(__name__).warning("partition 4 read %.1fs after the topic grew", seen.at[(4, 1)] - grown)
    assert sorted(seen.records) == [(0, 0, b"request 0"), (0, 1, b"request 0 after"), (1, 0, b"request 1"),
                                    (2, 0, b"request 2"), (3, 0, b"request 3"), (4, 1, b"request 4")]
    assert {p: v.next_offset for p, v in stored.items()} == {0: 2, 1: 1, 2: 1, 3: 1, 4: 2}
    lines = gained(caplog, topic)
    assert len(lines) == 1 and "[3, 4]" in lines[0], lines


async def test_a_group_less_loop_on_tansu_reads_a_topic_created_again_with_more_partitions(
        broker: RunningBroker, caplog: pytest.LogCaptureFixture) -> None:
    """Tansu has no CreatePartitions; what it does instead (a restart whose metadata request auto-creates our
    topic with 4 partitions) is a topic created again with more of them."""
    caplog.set_level(logging.INFO, logger="consumers.loop")
    bootstrap, topic = broker.bootstrap, f"grow-feed-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, 3)
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=f"grow{uuid.uuid4().hex[:6]}")
    seen = Seen()
    loop = ConsumeLoop(settings, Subscription(name="live feed", topic=topic, group_id=None, fetch_max_wait_ms=20,
                                              ensure_topics=False), PerRecord(seen))
    task = await started(loop)
    try:
        await publish(bootstrap, topic, b"old partition", partition=2)
        await seen.wait_for(b"old partition", within=5)
        await recreate(bootstrap, topic, 5)
        await publish(bootstrap, topic, b"new partition 4", partition=4)
        await seen.wait_for(b"new partition 4", within=FOLLOWED_WITHIN)
    finally:
        await stopped(task)
    assert (4, 0, b"new partition 4") in seen.records, seen.records
    lines = gained(caplog, topic)
    assert len(lines) == 1 and "[3, 4]" in lines[0], lines

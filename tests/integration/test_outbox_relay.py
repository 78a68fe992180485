"""The relay publishes committed outbox rows in order, once, and keeps them through a broker outage."""

import asyncio
import subprocess
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select, text, update

from producers.clients import stop_consumer
from producers.outbox_relay import OutboxRelay
from producers.publisher import Publisher
from schemas.events import BatchSyncProgress
from service.config import Settings
from service.db.engine import make_engine, make_sessionmaker
from service.db.models import Outbox
from service.ports import BrokerUnavailable
from service.runs.outbox import SqlOutbox, add_event
from tests.support.brokers import free_port, tansu_binary, wait_ready
from tests.support.databases import migrated_database


@pytest.fixture(scope="module")
def relay_dsn():
    """A state store of its own: the relay drains every unpublished row, and rows other modules left for
    brokers that are gone would slow it down here."""
    with migrated_database("bs_relay") as dsn:
        yield dsn


@pytest.fixture
async def sessions(relay_dsn):
    engine = make_engine(relay_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    yield make_sessionmaker(engine)
    await engine.dispose()


def progress(batch_id: int, chunk: int) -> BatchSyncProgress:
    return BatchSyncProgress(batch_id=batch_id, run_id=uuid.uuid4(), correlation_id="c", producer="test",
                             chunk=chunk, records_read=chunk, records_written=chunk, elapsed_ms=1,
                             records_per_second=1.0)


async def queue(sessions, topic: str, count: int, batch_id: int = 7) -> list[int]:
    async with sessions.begin() as session:
        for chunk in range(count):
            add_event(session, topic, progress(batch_id, chunk))
    async with sessions() as session:
        return list((await session.scalars(select(Outbox.id).where(Outbox.topic == topic).order_by(Outbox.id))).all())


async def unpublished(sessions, topic: str) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(Outbox).where(
            Outbox.topic == topic, Outbox.published_at.is_(None)))


async def chunks_on(bootstrap: str, topic: str, expected: int) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=20, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        chunks: list[int] = []
        async with asyncio.timeout(10):
            while len(chunks) < expected:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    chunks += [BatchSyncProgress.model_validate_json(r.value).chunk for r in records]
        extra = await consumer.getmany(timeout_ms=300)
        chunks += [BatchSyncProgress.model_validate_json(r.value).chunk for rs in extra.values() for r in rs]
    finally:
        await stop_consumer(consumer)
    return chunks


async def test_notify_publishes_rows_in_order(broker, sessions) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"ob{uuid.uuid4().hex[:8]}")
    topic = settings.topics.events
    publisher = Publisher(settings)
    await publisher.start()
    relay = OutboxRelay(SqlOutbox(sessions), publisher, batch_size=16)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.2)
        await queue(sessions, topic, 50)
        started = asyncio.get_running_loop().time()
        relay.notify()
        async with asyncio.timeout(10):
            while await unpublished(sessions, topic):
                await asyncio.sleep(0.01)
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.stop()
    print(f"outbox: 50 rows published {elapsed * 1000:.0f} ms after notify")
    assert elapsed < 0.5, f"notify did not wake the relay at once ({elapsed:.2f}s)"
    assert await chunks_on(broker.bootstrap, topic, 50) == list(range(50))


async def test_two_relays_publish_each_row_once(broker, sessions) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"ob{uuid.uuid4().hex[:8]}")
    topic = settings.topics.events
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await queue(sessions, topic, 300)
        relays = [OutboxRelay(SqlOutbox(sessions), publisher, batch_size=20) for _ in range(2)]
        await asyncio.gather(*(r.drain_once() for r in relays))
    finally:
        await publisher.stop()
    assert await unpublished(sessions, topic) == 0
    assert sorted(await chunks_on(broker.bootstrap, topic, 300)) == list(range(300))


def start_tansu(port: int) -> subprocess.Popen:
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen([tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                                "--silent"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"127.0.0.1:{port}", process)
    return process


async def test_broker_outage_keeps_rows_until_the_broker_is_back(sessions) -> None:
    port = free_port()
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}", topic_prefix=f"ob{uuid.uuid4().hex[:8]}",
                        kafka_request_timeout_ms=1000)
    topic = settings.topics.events
    publisher = Publisher(settings)
    await publisher.start()
    await queue(sessions, topic, 10)
    relay = OutboxRelay(SqlOutbox(sessions), publisher)
    with pytest.raises(BrokerUnavailable):
        await relay.drain_once()
    assert await unpublished(sessions, topic) == 10

    task = asyncio.create_task(relay.run())
    process = await asyncio.to_thread(start_tansu, port)
    try:
        async with asyncio.timeout(15):
            while await unpublished(sessions, topic):
                await asyncio.sleep(0.05)
        assert await chunks_on(settings.kafka_bootstrap, topic, 10) == list(range(10))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.stop()
        process.kill()
        process.wait()


async def test_rows_published_over_an_hour_ago_are_deleted(broker, sessions) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"ob{uuid.uuid4().hex[:8]}")
    topic = settings.topics.events
    old, recent = await queue(sessions, topic, 2)
    async with sessions.begin() as session:
        await session.execute(update(Outbox).where(Outbox.id == old).values(
            published_at=func.now() - text("interval '2 hours'")))
        await session.execute(update(Outbox).where(Outbox.id == recent).values(
            published_at=func.now() - text("interval '10 minutes'")))
    publisher = Publisher(settings)
    await publisher.start()
    task = asyncio.create_task(OutboxRelay(SqlOutbox(sessions, retention_seconds=3600), publisher,
                                           cleanup_every=0).run())
    try:
        async with asyncio.timeout(5):
            while True:
                async with sessions() as session:
                    if await session.get(Outbox, old) is None:
                        break
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.stop()
    async with sessions() as session:
        assert await session.get(Outbox, recent) is not None


async def test_a_row_the_broker_refuses_stops_being_retried_and_never_blocks_the_others(broker, sessions) -> None:
    from service.runs.outbox import MAX_ATTEMPTS

    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"ob{uuid.uuid4().hex[:8]}",
                        max_message_bytes=10_000)
    topic = settings.topics.events
    async with sessions.begin() as session:
        session.add(Outbox(topic=topic, key=b"7", value=b"x" * 20_000, headers={}))
    await queue(sessions, topic, 3)
    publisher = Publisher(settings)
    await publisher.start()
    relay = OutboxRelay(SqlOutbox(sessions), publisher)
    try:
        for _ in range(MAX_ATTEMPTS + 2):
            await relay.drain_once()
    finally:
        await publisher.stop()
    assert sorted(await chunks_on(broker.bootstrap, topic, 3)) == [0, 1, 2]
    async with sessions() as session:
        poison = await session.scalar(select(Outbox).where(Outbox.topic == topic, Outbox.published_at.is_(None)))
    assert poison.attempts == MAX_ATTEMPTS and "exceeds" in poison.last_error


async def test_a_reply_topic_that_cannot_exist_never_holds_back_the_events(broker, sessions) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"ob{uuid.uuid4().hex[:8]}")
    async with sessions.begin() as session:
        session.add(Outbox(topic="bad topic!", key=b"c", value=b"{}", headers={}))
    await queue(sessions, settings.topics.events, 2)
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await OutboxRelay(SqlOutbox(sessions), publisher).drain_once()
    finally:
        await publisher.stop()
    assert sorted(await chunks_on(broker.bootstrap, settings.topics.events, 2)) == [0, 1]
    async with sessions() as session:
        bad = await session.scalar(select(Outbox).where(Outbox.topic == "bad topic!"))
    assert bad.published_at is None and bad.attempts == 1 and "valid topic name" in bad.last_error

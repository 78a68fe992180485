"""Unprocessable messages land in P.dlq with their reason and origin; the consumer goes on."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.dlq import send_to_dlq
from consumers.projector import Projector
from producers.clients import stop_consumer
from producers.publisher import Publisher
from schemas.base import utcnow
from schemas.events import BatchSyncStarted, Trigger
from schemas.wire import encode
from service.config import Settings
from service.db.engine import make_engine, make_sessionmaker
from service.db.models import RunHistory
from tests.support.signing import SIGNATURE_HEADER, signed_by, signed_headers


@pytest.fixture
async def sessions(state_dsn):
    engine = make_engine(state_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    yield make_sessionmaker(engine)
    await engine.dispose()


async def read(bootstrap: str, topic: str, expected: int) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=20, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        records: list = []
        async with asyncio.timeout(15):
            while len(records) < expected:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records += batch
    finally:
        await stop_consumer(consumer)
    return sorted(records, key=lambda r: (r.partition, r.offset))


async def test_send_to_dlq_keeps_bytes_key_and_headers(broker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"dq{uuid.uuid4().hex[:8]}")
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await publisher.send(settings.topics.requested, b"\xffnot json", key=b"42", headers={"traceId": "t-1"})
        (original,) = await read(broker.bootstrap, settings.topics.requested, 1)
        await send_to_dlq(publisher, settings.topics.dlq, original, "invalid event: bad json")
    finally:
        await publisher.stop()
    (parked,) = await read(broker.bootstrap, settings.topics.dlq, 1)
    headers = {k: v.decode() for k, v in parked.headers}
    assert (parked.value, parked.key) == (b"\xffnot json", b"42")
    assert headers == {
        "traceId": "t-1",
        "dlqSourceSignature": dict(original.headers)[SIGNATURE_HEADER].decode(),
        "dlqReason": "invalid event: bad json",
        "dlqSourceTopic": settings.topics.requested,
        "dlqSourcePartition": str(original.partition),
        "dlqSourceOffset": str(original.offset),
        SIGNATURE_HEADER: signed_headers(settings, settings.topics.dlq, b"42", b"\xffnot json")[-1][1].decode(),
    }
    assert signed_by(settings, parked)


async def test_projector_parks_invalid_events_and_goes_on(broker, state_dsn, sessions) -> None:
    settings = Settings(database_url=state_dsn, kafka_bootstrap=broker.bootstrap, events_partitions=1,
                        topic_prefix=f"dq{uuid.uuid4().hex[:8]}", session_timeout_ms=3000)
    run_id = uuid.uuid4()
    started = BatchSyncStarted(batch_id=5, run_id=run_id, correlation_id="c", producer="test",
                               trigger=Trigger.EVENT, requested_by="svc", started_at=utcnow())
    unknown = b'{"eventType": "BatchSyncExploded", "batchId": 5}'
    publisher = Publisher(settings)
    await publisher.start()
    task = asyncio.create_task(Projector(settings, sessions, publisher).run())
    try:
        await publisher.send(settings.topics.events, b"{not json", key=b"5")
        await publisher.send(settings.topics.events, unknown, key=b"5")
        await publisher.send(settings.topics.events, encode(started), key=b"5")
        parked = await read(broker.bootstrap, settings.topics.dlq, 2)
        async with asyncio.timeout(10):
            while True:
                async with sessions() as session:
                    row = await session.get(RunHistory, run_id)
                if row is not None:
                    break
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.stop()
    assert [r.value for r in parked] == [b"{not json", unknown]
    reasons = [dict(r.headers)["dlqReason"].decode() for r in parked]
    assert "Invalid JSON" in reasons[0]
    assert "BatchSyncExploded" in reasons[1]
    assert [dict(r.headers)["dlqSourceOffset"] for r in parked] == [b"0", b"1"]
    assert (row.status, row.requested_by) == ("RUNNING", "svc")

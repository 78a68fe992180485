"""The publisher awaits acks and fails fast with BrokerUnavailable when the broker is not there."""

import asyncio
import subprocess
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from producers.clients import METADATA_MAX_AGE_MS, stop_consumer
from producers.publisher import Publisher
from service.config import Settings
from service.ports import BrokerUnavailable
from tests.support.brokers import free_port, tansu_binary, wait_ready
from tests.support.signing import signed_headers


async def test_send_is_acked_with_key_and_headers(broker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"p{uuid.uuid4().hex[:8]}")
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await publisher.send(settings.topics.events, b'{"x":1}', key=b"42", headers={"eventType": "T"})
    finally:
        await publisher.stop()
    consumer = AIOKafkaConsumer(settings.topics.events, bootstrap_servers=broker.bootstrap,
                                auto_offset_reset="earliest", fetch_max_wait_ms=20)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
    finally:
        await stop_consumer(consumer)
    records = [r for rs in batch.values() for r in rs]
    assert [(r.key, r.value, r.headers) for r in records] == [(b"42", b'{"x":1}', (
        ("eventType", b"T"), *signed_headers(settings, settings.topics.events, b"42", b'{"x":1}')))]


async def test_closed_port_gives_broker_unavailable_within_seconds() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_request_timeout_ms=2000)
    publisher = Publisher(settings)
    started = time.monotonic()
    await publisher.start()
    assert not publisher.connected
    with pytest.raises(BrokerUnavailable):
        await publisher.send(settings.topics.events, b"x")
    with pytest.raises(BrokerUnavailable):
        await publisher.send(settings.topics.events, b"y")
    assert time.monotonic() - started < 10
    await publisher.stop()


def start_tansu(port: int) -> subprocess.Popen:
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen([tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                                "--silent"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"127.0.0.1:{port}", process)
    return process


async def test_publisher_whose_start_failed_connects_on_a_later_send() -> None:
    port = free_port()
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}", topic_prefix=f"p{uuid.uuid4().hex[:8]}")
    publisher = Publisher(settings)
    await publisher.start()
    assert not publisher.connected
    process = await asyncio.to_thread(start_tansu, port)
    try:
        await publisher.send(settings.topics.events, b"late")
        assert publisher.connected
    finally:
        await publisher.stop()
        process.kill()
        process.wait()


async def test_oversized_value_is_refused(broker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap, max_message_bytes=1000)
    publisher = Publisher(settings)
    with pytest.raises(ValueError):
        await publisher.send(settings.topics.events, b"x" * 1001)
    assert not publisher.connected


async def test_topics_lost_in_a_broker_restart_are_recreated_and_the_send_retried() -> None:
    """Tansu forgets its topics on restart; once the producer's metadata shows them gone, a send recreates them.

    (Before that refresh Tansu acks produce requests to unknown topics without keeping them: see docs/brokers.md.)
    """
    port = free_port()
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}", topic_prefix=f"p{uuid.uuid4().hex[:8]}",
                        kafka_request_timeout_ms=1500)
    process = await asyncio.to_thread(start_tansu, port)
    publisher = Publisher(settings)
    try:
        await publisher.start()
        await publisher.send(settings.topics.events, b"before")
        process.kill()
        process.wait()
        process = await asyncio.to_thread(start_tansu, port)
        await asyncio.sleep(METADATA_MAX_AGE_MS / 1000 + 0.5)
        await publisher.send(settings.topics.events, b"after")
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(settings.topics.all())}
            assert partitions == {settings.topics.requested: settings.requested_partitions,
                                  settings.topics.events: settings.events_partitions,
                                  settings.topics.replies: settings.replies_partitions,
                                  settings.topics.dlq: settings.events_partitions,
                                  settings.topics.rejected: settings.events_partitions}
        finally:
            await admin.close()
    finally:
        await publisher.stop()
        process.kill()
        process.wait()

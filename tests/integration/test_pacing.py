"""An idle consumer does not spin on a broker that answers empty fetches at once (noida-db, the embedded
default), and pacing costs nothing where the broker waits itself (Tansu, like Kafka)."""

import asyncio
import resource
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers.pacing import pace_empty_fetches
from producers.clients import stop_consumer
from tests.support.brokers import noida

WAIT_MS = 50


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def idle_share(bootstrap: str, paced: bool, seconds: float = 2.0) -> float:
    topic = f"idle-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    await producer.send_and_wait(topic, b"x")
    await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, fetch_max_wait_ms=WAIT_MS,
                                auto_offset_reset="earliest")
    await consumer.start()
    if paced:
        pace_empty_fetches(consumer, WAIT_MS)
    try:
        await consumer.getmany(timeout_ms=3000)
        started, cpu = time.monotonic(), cpu_seconds()
        while time.monotonic() - started < seconds:
            await consumer.getmany(timeout_ms=200)
        return (cpu_seconds() - cpu) / (time.monotonic() - started)
    finally:
        await stop_consumer(consumer)


def test_an_idle_consumer_on_noida_spins_unless_paced() -> None:
    with noida() as broker:
        unpaced = asyncio.run(idle_share(broker.bootstrap, paced=False))
        paced = asyncio.run(idle_share(broker.bootstrap, paced=True))
    assert unpaced > 0.3, f"noida-db now waits itself ({unpaced:.0%}); pacing may be unnecessary"
    assert paced < 0.15, f"a paced idle consumer still uses {paced:.0%} of a core"


async def test_pacing_adds_no_delay_when_data_arrives(broker) -> None:
    topic = f"paced-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    await producer.send_and_wait(topic, b"first")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=WAIT_MS,
                                auto_offset_reset="earliest")
    await consumer.start()
    pace_empty_fetches(consumer, WAIT_MS)
    try:
        await consumer.getmany(timeout_ms=3000)
        latencies = []
        for _ in range(10):
            sent = time.monotonic()
            await producer.send_and_wait(topic, b"x")
            async with asyncio.timeout(5):
                while not (await consumer.getmany(timeout_ms=100)):
                    pass
            latencies.append(time.monotonic() - sent)
    finally:
        await stop_consumer(consumer)
        await producer.stop()
    assert sorted(latencies)[5] < 2 * WAIT_MS / 1000 + 0.05

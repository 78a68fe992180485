"""The real services the suite depends on answer."""

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from producers.clients import stop_consumer


async def test_state_store_is_migrated(state_dsn: str) -> None:
    conn = await asyncpg.connect(state_dsn)
    try:
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    finally:
        await conn.close()
    assert {"connections", "batches", "runs", "request_ledger", "outbox", "run_history"} <= tables


async def test_broker_round_trip(broker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait("smoke", b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer("smoke", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                                fetch_max_wait_ms=20)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        values = [m.value for msgs in batch.values() for m in msgs]
    finally:
        await stop_consumer(consumer)
    assert values == [b"hello"]

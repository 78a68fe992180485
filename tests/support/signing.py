"""The bus as another client of the broker sees it: records written exactly as given (no signature added),
records read whole (key, value, headers), and the signature the service would put on them.

Tests that need a record the Publisher would sign use the Publisher itself; these helpers are for
writing what the Publisher never would (forgeries, copies) and for checking what the service wrote.
"""

import asyncio
import functools

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from producers.clients import stop_consumer
from schemas.signing import SIGNATURE_HEADER
from service.config import Settings
from service.security.event_signing import EventKeys


@functools.lru_cache(maxsize=16)
def _keys(secret: str | None, previous: str | None) -> EventKeys:
    return EventKeys.from_settings(Settings(secret_key=secret, secret_key_previous=previous))


def keys_of(settings: Settings) -> EventKeys:
    """The event keys of `settings`, derived once per key (a benchmark signs a million records)."""
    secret, previous = settings.secret_key, settings.secret_key_previous
    return _keys(secret.get_secret_value() if secret else None, previous.get_secret_value() if previous else None)


def signed_headers(settings: Settings, topic: str, key: bytes | None, value: bytes | None,
                   headers: dict[str, str] | None = None) -> list[tuple[str, bytes]]:
    """The wire headers the service's Publisher sends with this record under `settings`' key."""
    return keys_of(settings).signed_headers(topic, key, value, headers)


def signed_by(settings: Settings, record: ConsumerRecord) -> bool:
    """True when `record` carries a signature valid under `settings`' current or earlier keys."""
    return keys_of(settings).problem(record) is None


async def produce_record(bootstrap: str, topic: str, value: bytes, key: bytes | None,
                         headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers or [])
    finally:
        await producer.stop()


async def read_records(bootstrap: str, topic: str, at_least: int, within: float = 20) -> list[ConsumerRecord]:
    """Every record of `topic` from the beginning, in partition order: once `at_least` are there, until a
    fetch finds nothing more (empty partitions never report a high-water mark on Tansu, see docs/brokers.md)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(*tps, timeout_ms=300)
            records += [r for rs in batch.values() for r in rs]
            if not batch and len(records) >= at_least:
                return sorted(records, key=lambda r: (r.partition, r.offset))
        positions = {tp.partition: await consumer.position(tp) for tp in tps}
        raise AssertionError(f"{topic}: {len(records)} of at least {at_least} records in {within}s; "
                             f"positions {positions}")
    finally:
        await stop_consumer(consumer)


__all__ = ["SIGNATURE_HEADER", "produce_record", "read_records", "signed_by", "signed_headers"]

"""Kafka topics as a contract source and target on the session's real broker: topics of three partitions,
records keyed by id, values JSON objects the way `tests/support/http_api.py` writes them (decimals as
strings, datetimes RFC 3339, binary base64). The target is at-least-once: the suite's
replay test crashes after a checkpoint, so it holds; `tests/integration/test_kafka_connector.py` shows the
window between acks and checkpoint."""

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from producers.clients import stop_consumer
from schemas.api import SourceSpec
from service.connectors.kafka import KIND
from service.sync.model import Endpoint
from tests.contract.harness import FIELDS, Context
from tests.support.http_api import json_record

PARTITIONS = 3


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    async with admin_client(bootstrap) as admin:
        await admin.create_topics([NewTopic(topic, partitions, 1)])


async def publish(bootstrap: str, topic: str, value: bytes, key: bytes | None = None, *,
                  partition: int | None = None) -> None:
    """One record, by a producer of its own (a running one may not know a topic's new partitions yet)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def produce(bootstrap: str, topic: str, values: list[bytes | None], keys: list[bytes | None]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        acks = [await producer.send(topic, value=v, key=k) for v, k in zip(values, keys, strict=True)]
        for ack in acks:
            await ack
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record value of the topic (JSON-decoded), read up to each partition's high-water mark."""
    tps = [TopicPartition(topic, p) for p in await partitions(bootstrap, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        values: list[Any] = []
        for _ in range(200):
            batch = await consumer.getmany(*tps, timeout_ms=100)
            values.extend(json.loads(m.value) for ms in batch.values() for m in ms if m.value is not None)
            known = all(consumer.highwater(tp) is not None for tp in tps)
            if known and all([await consumer.position(tp) >= (consumer.highwater(tp) or 0) for tp in tps]):
                return values
        raise AssertionError(f"topic {topic} not read to its end")
    finally:
        await stop_consumer(consumer)


async def partitions(bootstrap: str, topic: str) -> list[int]:
    async with admin_client(bootstrap) as admin:
        described = await admin.describe_topics([topic])
    return sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])


class KafkaCase:
    name = "kafka"
    fields = FIELDS
    modes = KIND.modes

    def __init__(self, ctx: Context) -> None:
        self.bootstrap = ctx.kafka_bootstrap

    def endpoint(self, columns: bool = False) -> Endpoint:
        params: dict[str, Any] = {"bootstrap": self.bootstrap, "key": "id"}
        if columns:
            params["columns"] = [{"name": f.name, "kind": f.kind} for f in FIELDS]
        return Endpoint(type="kafka", params=params)

    async def seed(self, table: str, rows: list[dict[str, Any]]) -> tuple[Endpoint, SourceSpec]:
        await create_topic(self.bootstrap, table)
        values = [json.dumps(json_record(r), ensure_ascii=False).encode() for r in rows]
        await produce(self.bootstrap, table, values, [str(r["id"]).encode() for r in rows])
        # An empty topic has nothing to learn columns from: such a connection declares them.
        return self.endpoint(columns=not rows), SourceSpec(table=table)

    async def missing(self) -> tuple[Endpoint, SourceSpec]:
        return self.endpoint(), SourceSpec(table=f"missing_{uuid.uuid4().hex[:8]}")

    def unreachable(self, port: int) -> Endpoint:
        return Endpoint(type="kafka", params={"bootstrap": f"127.0.0.1:{port}"})

    async def create(self, table: str) -> Endpoint:
        await create_topic(self.bootstrap, table)
        return self.endpoint()

    async def read(self, endpoint: Endpoint, table: str) -> list[dict[str, Any]]:
        return await read_topic(self.bootstrap, table)


SOURCE_CASES = [KafkaCase]
TARGET_CASES = [KafkaCase]

"""Requests published by other services straight to Kafka: idempotency, the DLQ, another client library."""

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from producers.clients import stop_consumer
from tests.contract.cases.kafka import publish
from tests.support.builders import create_empty_like_orders, create_orders, table_fingerprint, unique
from tests.support.stack import create_batch, create_connection, running_stack, stack_settings


@pytest.fixture(scope="module")
async def stack(state_dsn, broker):
    async with running_stack(stack_settings(state_dsn, broker.bootstrap)) as running:
        yield running


@pytest.fixture(scope="module")
async def batch(stack, source_dsn, target_dsn):
    table = unique("orders")
    await create_orders(source_dsn, table, 700)
    await create_empty_like_orders(target_dsn, table)
    source_id = await create_connection(stack, unique("src"), source_dsn)
    target_id = await create_connection(stack, unique("tgt"), target_dsn)
    batch_id = await create_batch(stack, unique("batch"), source_id, target_id, {"table": table},
                                  {"table": table, "mode": "upsert", "keyColumns": ["id"]})
    return batch_id, table


def request(batch_id: int, reply_to: str | None, request_id: str | None = None, **extra) -> dict:
    event_id = str(uuid.uuid4())
    return {
        "eventId": event_id, "eventType": "BatchSyncRequested", "schemaVersion": 1,
        "occurredAt": "2026-11-30T00:00:00Z", "correlationId": str(uuid.uuid4()), "batchId": batch_id,
        "runId": None, "producer": "other-service", "requestId": request_id or event_id,
        "requestedBy": "billing-service", "trigger": "event", "replyTo": reply_to, "resumeRunId": None, **extra,
    }


async def collect(bootstrap: str, topic: str, count: int, within: float = 30) -> list:
    """The first `count` distinct events on `topic`: delivery is at least once, so a reply may come twice (the
    worker's direct send and the relay's, when the relay claimed its row first) and readers dedupe by eventId."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                fetch_max_wait_ms=20, metadata_max_age_ms=500)
    await consumer.start()
    records: dict[object, Any] = {}
    try:
        async with asyncio.timeout(within):
            while len(records) < count:
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    for message in messages:
                        records.setdefault(_event_id(message), message)
    finally:
        await stop_consumer(consumer)
    return list(records.values())


def _event_id(message: Any) -> object:
    """A record's eventId; a record that is not an event (a DLQ'd request that could not be parsed) is its own."""
    try:
        return json.loads(message.value)["eventId"]
    except (ValueError, KeyError, TypeError):
        return (message.partition, message.offset)


async def test_duplicate_request_id_runs_once_and_answers_both(stack, batch, state_dsn, broker):
    batch_id, _ = batch
    reply_topic = unique("replies")
    request_id = str(uuid.uuid4())
    first = request(batch_id, reply_topic, request_id)
    await publish(broker.bootstrap, stack.settings.topics.requested, json.dumps(first).encode(), str(batch_id).encode())
    replies = await collect(broker.bootstrap, reply_topic, 1)
    second = request(batch_id, reply_topic, request_id)
    requested = stack.settings.topics.requested
    await publish(broker.bootstrap, requested, json.dumps(second).encode(), str(batch_id).encode())
    replies = await collect(broker.bootstrap, reply_topic, 2)

    answers = [json.loads(r.value) for r in replies]
    # each reply is keyed by its correlation id: on a reply topic of several partitions they come in any order
    assert sorted(a["correlationId"] for a in answers) == sorted([first["correlationId"], second["correlationId"]])
    assert answers[0]["runId"] == answers[1]["runId"]
    assert all(a["success"] and a["recordsSynced"] == 700 for a in answers)
    conn = await asyncpg.connect(state_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM runs WHERE request_id = $1", request_id) == 1
        assert await conn.fetchval("SELECT seen_count FROM request_ledger WHERE request_id = $1", request_id) == 2
    finally:
        await conn.close()


async def test_unparseable_and_invalid_requests_go_to_the_dlq_and_the_worker_goes_on(stack, batch, broker):
    batch_id, _ = batch
    topics = stack.settings.topics
    await publish(broker.bootstrap, topics.requested, b"{not json", b"x")
    await publish(broker.bootstrap, topics.requested, json.dumps({"eventType": "BatchSyncRequested"}).encode(), b"y")

    parked = await collect(broker.bootstrap, topics.dlq, 2)
    assert {r.value for r in parked} == {b"{not json", json.dumps({"eventType": "BatchSyncRequested"}).encode()}
    reasons = [dict(r.headers)["dlqReason"].decode() for r in parked]
    assert any("not JSON" in reason for reason in reasons)
    assert any("batchId" in reason for reason in reasons)

    reply_topic = unique("replies")
    valid = request(batch_id, reply_topic)
    await publish(broker.bootstrap, topics.requested, json.dumps(valid).encode(), str(batch_id).encode())
    [reply] = await collect(broker.bootstrap, reply_topic, 1)
    assert json.loads(reply.value)["success"] is True


async def test_unknown_batch_is_answered_with_batch_not_found(stack, broker):
    reply_topic = unique("replies")
    await publish(broker.bootstrap, stack.settings.topics.requested, json.dumps(request(987654, reply_topic)).encode())
    [reply] = await collect(broker.bootstrap, reply_topic, 1)
    answer = json.loads(reply.value)
    assert answer["success"] is False and answer["errorCode"] == "BATCH_NOT_FOUND" and answer["message"] == "批次不存在"


async def test_a_request_from_confluent_kafka_is_answered_on_its_own_reply_topic(stack, batch, target_dsn, source_dsn,
                                                                                  broker):
    from confluent_kafka import Consumer, Producer

    batch_id, table = batch
    reply_topic = unique("confluent-replies")
    message = request(batch_id, reply_topic)

    def round_trip() -> dict:
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        producer.produce(stack.settings.topics.requested, json.dumps(message).encode(), key=str(batch_id).encode())
        producer.flush(10)
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"),
                             "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                             "topic.metadata.refresh.interval.ms": 500})
        consumer.subscribe([reply_topic])
        try:
            for _ in range(600):
                record = consumer.poll(0.1)
                if record is not None and record.error() is None:
                    return json.loads(record.value())
        finally:
            consumer.close()
        raise AssertionError("no reply")

    reply = await asyncio.to_thread(round_trip)
    assert reply["correlationId"] == message["correlationId"]
    assert reply["success"] is True and reply["recordsSynced"] == 700
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)

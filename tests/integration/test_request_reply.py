"""Request-reply over the real broker: round trip, latency, timeouts, and instances side by side."""

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.replies import ReplyListener
from producers.clients import consumer_config, stop_consumer
from producers.publisher import Publisher
from producers.request_reply import RequestReplyClient
from schemas.base import utcnow
from schemas.events import BatchSyncCompleted, BatchSyncRequested, Trigger
from schemas.wire import encode
from service.config import Settings
from service.ports import BrokerUnavailable
from tests.support.brokers import free_port


def settings_for(broker) -> Settings:
    return Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"rr{uuid.uuid4().hex[:8]}",
                    requested_partitions=3, replies_partitions=3)


def sync_request(settings: Settings, batch_id: int = 1) -> BatchSyncRequested:
    return BatchSyncRequested(batch_id=batch_id, correlation_id=str(uuid.uuid4()), producer="test",
                              requested_by="tester", trigger=Trigger.HTTP, reply_to=settings.topics.replies)


async def echo(settings: Settings, publisher: Publisher, ready: asyncio.Event) -> None:
    """A trivial responder: every request on P.requested is answered at once on its replyTo."""
    consumer = AIOKafkaConsumer(**consumer_config(settings, group_id=None, fetch_max_wait_ms=10))
    await consumer.start()
    try:
        await consumer.topics()
        topic = settings.topics.requested
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        ready.set()
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    request = BatchSyncRequested.model_validate_json(record.value)
                    reply = BatchSyncCompleted(
                        batch_id=request.batch_id, run_id=uuid.uuid4(), correlation_id=request.correlation_id,
                        producer="echo", success=True, message="同步成功", sync_time=utcnow(), records_synced=1)
                    await publisher.send(request.reply_to, encode(reply), key=request.correlation_id.encode())
    finally:
        await stop_consumer(consumer)


@asynccontextmanager
async def running(settings: Settings, clients: int = 1, responder: bool = True) -> AsyncIterator[list]:
    publisher = Publisher(settings)
    await publisher.start()
    started = [RequestReplyClient(settings, publisher) for _ in range(clients)]
    listeners = [ReplyListener(settings, client) for client in started]
    for listener in listeners:
        await listener.start()
    ready = asyncio.Event()
    task = asyncio.create_task(echo(settings, publisher, ready)) if responder else None
    if task:
        await asyncio.wait_for(ready.wait(), 10)
    try:
        yield started
    finally:
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for listener in listeners:
            await listener.stop()
        await publisher.stop()


async def test_round_trip_latency(broker) -> None:
    settings = settings_for(broker)
    async with running(settings) as (client,):
        assert await client.request(sync_request(settings), timeout=10) is not None
        timings = []
        for n in range(100):
            request = sync_request(settings, batch_id=n + 1)
            started = time.perf_counter()
            reply = await client.request(request, timeout=5)
            timings.append((time.perf_counter() - started) * 1000)
            assert reply is not None and reply.correlation_id == request.correlation_id
            assert reply.batch_id == n + 1
    timings.sort()
    p50, p95 = statistics.median(timings), timings[94]
    print(f"request-reply round trip over 100 requests: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
          f"max {timings[-1]:.1f} ms (reply fetch wait {settings.reply_fetch_max_wait_ms} ms, echo 10 ms)")
    assert p50 <= 60, f"p50 {p50:.1f} ms"


async def test_timeout_returns_none_and_forgets_the_request(broker) -> None:
    settings = settings_for(broker)
    async with running(settings, responder=False) as (client,):
        started = time.monotonic()
        assert await client.request(sync_request(settings), timeout=0.3) is None
        assert 0.3 <= time.monotonic() - started < 2
        assert client._pending == {}


async def test_two_clients_side_by_side_each_get_their_own_replies(broker) -> None:
    settings = settings_for(broker)
    async with running(settings, clients=2) as clients:
        requests = [[sync_request(settings, batch_id=10 * c + n + 1) for n in range(10)] for c in range(2)]
        replies = await asyncio.gather(*(
            client.request(request, timeout=10) for client, batch in zip(clients, requests, strict=True)
            for request in batch
        ))
    sent = [request for batch in requests for request in batch]
    assert all(reply is not None for reply in replies)
    assert [r.correlation_id for r in replies] == [r.correlation_id for r in sent]
    assert [r.batch_id for r in replies] == [r.batch_id for r in sent]


async def test_unreachable_broker_raises_broker_unavailable() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_request_timeout_ms=1000)
    publisher = Publisher(settings)
    client = RequestReplyClient(settings, publisher)
    listener = ReplyListener(settings, client)
    started = time.monotonic()
    await publisher.start()
    await listener.start()
    try:
        with pytest.raises(BrokerUnavailable):
            await client.request(sync_request(settings), timeout=5)
    finally:
        await listener.stop()
        await publisher.stop()
    assert time.monotonic() - started < 8

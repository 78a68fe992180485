"""Request-reply over Kafka: a map of correlationId → Future, resolved by a dedicated reply consumer.

The reply consumer has no group and reads every partition of `P.replies` from the end, so any number
of API instances run side by side and each picks out its own replies; unknown ids are ignored, and so
is (with a warning) a reply without the service's signature, so nobody who can write to the topic can
answer a sync in the worker's name.
"""

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from producers.clients import new_consumer
from producers.pacing import pace_empty_fetches
from producers.publisher import Publisher
from producers.topics import ensure_topics
from schemas.events import BatchSyncCompleted, BatchSyncRequested
from service.config import Settings
from service.ports import BrokerUnavailable
from service.runs.outbox import encode, event_headers
from service.security.event_signing import EventKeys

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0


class RequestReplyClient:
    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self._settings = settings
        self._publisher = publisher
        self._keys = EventKeys.from_settings(settings)
        self._pending: dict[str, asyncio.Future[BatchSyncCompleted | None]] = {}
        self._listening = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Start the reply consumer; waits up to the request timeout for it, then keeps trying in the background."""
        self._task = asyncio.create_task(self._listen(), name="reply-consumer")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), self._settings.kafka_request_timeout_ms / 1000)
        if not self._listening.is_set():
            log.warning("reply consumer not connected yet; requests answer BrokerUnavailable until it is")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for future in self._pending.values():
            if not future.done():
                future.set_result(None)
        self._pending.clear()

    async def request(
        self, event: BatchSyncRequested, timeout: float  # noqa: ASYNC109 - the SyncRequester port names it
    ) -> BatchSyncCompleted | None:
        """Publish `event` to `P.requested` and await its reply; None when `timeout` passes first."""
        if not self._listening.is_set():
            raise BrokerUnavailable("reply consumer is not connected to the broker")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        correlation_id = event.correlation_id
        if correlation_id in self._pending:
            raise ValueError(f"a request with correlationId {correlation_id} is already waiting")
        future: asyncio.Future[BatchSyncCompleted | None] = loop.create_future()
        self._pending[correlation_id] = future
        try:
            await self._publisher.send(self._settings.topics.requested, encode(event),
                                       key=str(event.batch_id).encode(), headers=event_headers(event))
            try:
                return await asyncio.wait_for(future, max(0.0, deadline - loop.time()))
            except TimeoutError:
                return None
        finally:
            self._pending.pop(correlation_id, None)

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            consumer = new_consumer(self._settings, group_id=None,
                                    fetch_max_wait_ms=self._settings.reply_fetch_max_wait_ms)
            try:
                await self._connect(consumer)
                backoff = 0.2
                self._listening.set()
                while True:
                    batch = await consumer.getmany(timeout_ms=1000)
                    for records in batch.values():
                        for record in records:
                            self._resolve(record)
            except (KafkaError, OSError, TimeoutError, BrokerUnavailable) as exc:
                log.warning("reply consumer failed, reconnecting in %.1fs: %r", backoff, exc)
            finally:
                self._listening.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), self._settings.kafka_request_timeout_ms / 1000)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _connect(self, consumer: AIOKafkaConsumer) -> None:
        """Assign every reply partition at its end; positions are resolved before any request is sent."""
        topic = self._settings.topics.replies
        async with asyncio.timeout(2 * self._settings.kafka_request_timeout_ms / 1000):
            await ensure_topics(self._settings)
            await consumer.start()
            pace_empty_fetches(consumer, self._settings.reply_fetch_max_wait_ms)
            await consumer.topics()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not partitions:
                raise BrokerUnavailable(f"no partitions for {topic}")
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)

    def _resolve(self, record) -> None:
        if (refusal := self._keys.refusal(record)) is not None:
            log.warning("ignoring a reply at %s[%s]@%s: %s", record.topic, record.partition, record.offset, refusal)
            return
        if not self._pending:
            return
        try:
            reply = BatchSyncCompleted.model_validate_json(record.value or b"")
        except ValidationError:
            log.debug("ignoring a reply that is not a BatchSyncCompleted at %s/%s", record.partition, record.offset)
            return
        future = self._pending.get(reply.correlation_id)
        if future is not None and not future.done():
            future.set_result(reply)

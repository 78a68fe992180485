"""The one producer of a process: every send awaits its ack within the request timeout.

A broker that is down must turn into `BrokerUnavailable` in seconds (the API answers 503), so
starting never blocks for long and a failed start is retried on the next send. Every record leaves
with the service's `batchsync-signature` (docs/spec.md §7, trust boundaries), added here and nowhere
else: events, replies, requests and DLQ copies alike.
"""

import asyncio
import contextlib
import logging
import re

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from producers.clients import new_producer
from producers.topics import create_missing_topics, ensure_topics
from service.config import Settings
from service.observability import tracing
from service.ports import BrokerUnavailable
from service.security.event_signing import EventKeys

log = logging.getLogger(__name__)
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
"""Kafka's rule for topic names; a reply topic named otherwise can never be produced to."""

Message = tuple[str, bytes, bytes | None, dict[str, str] | None]
"""topic, value, key, headers"""


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._keys = EventKeys.from_settings(settings)
        self._timeout = settings.kafka_request_timeout_ms / 1000
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def check(self) -> None:
        """One metadata request over this producer's connection (`/readyz`); BrokerUnavailable when it fails.
        The caller bounds the time."""
        producer = await self._ready()
        try:
            await producer.client.fetch_all_metadata()
        except (KafkaError, OSError) as exc:
            raise BrokerUnavailable(f"metadata request to {self._settings.kafka_bootstrap} failed: {exc!r}") from exc

    async def start(self) -> None:
        """Connect and ensure topics; when the broker is down, log it and leave the retry to `send`."""
        try:
            await self._ready()
        except BrokerUnavailable as exc:
            log.warning("broker not reachable at start, will retry on first send: %s", exc)

    async def stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await producer.stop()

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Publish and await the broker's ack; BrokerUnavailable on failure or after the request timeout."""
        if len(value) > self._settings.max_message_bytes:
            raise ValueError(f"message of {len(value)} bytes exceeds {self._settings.max_message_bytes}")
        wire_headers = self._keys.signed_headers(topic, key, value, headers)
        producer = await self._ready()
        try:
            await self._send_once(producer, topic, value, key, wire_headers)
            return
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._reset(producer)
            if not await self._topic_was_lost(topic):
                raise BrokerUnavailable(f"send to {topic} failed: {exc!r}") from exc
            log.warning("topic %s was missing (broker restarted?); recreated it, retrying once", topic)
        producer = await self._ready()
        try:
            await self._send_once(producer, topic, value, key, wire_headers)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._reset(producer)
            raise BrokerUnavailable(f"send to {topic} failed after recreating topics: {exc!r}") from exc

    async def _topic_was_lost(self, topic: str) -> bool:
        """After a failed send to one of our topics: recreate missing topics; True if `topic` was among them."""
        if topic not in self._settings.topics.all():
            return False
        try:
            async with asyncio.timeout(self._timeout / 2):
                return topic in await create_missing_topics(self._settings)
        except (BrokerUnavailable, TimeoutError):
            return False

    async def send_many(self, messages: list[Message]) -> list[BaseException | None]:
        """Enqueue all messages in order, then await every ack: per-key order is kept, latency is one round trip.

        Returns one result per message (None = acked); raises BrokerUnavailable when none could be sent.
        """
        results: list[BaseException | None] = [self._refusal(message) for message in messages]
        sendable = [index for index, refused in enumerate(results) if refused is None]
        if not sendable:
            return results
        ours = set(self._settings.topics.all())
        producer = await self._ready()
        await self._recreate_unknown(producer, {messages[i][0] for i in sendable})
        acks: list[tuple[int, asyncio.Future[object]]] = []
        try:
            async with asyncio.timeout(self._timeout):
                for index in (i for i in sendable if messages[i][0] in ours):
                    acks.append((index, await self._enqueue(producer, messages[index])))
        except UnknownTopicOrPartitionError as exc:
            await ensure_topics(self._settings)
            raise BrokerUnavailable(f"topic missing, ensured topics: {exc!r}") from exc
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._reset(producer)
            raise BrokerUnavailable(f"batch send failed: {exc!r}") from exc
        for index in (i for i in sendable if messages[i][0] not in ours):
            try:
                async with asyncio.timeout(self._timeout / 2):
                    acks.append((index, await self._enqueue(producer, messages[index])))
            except (KafkaError, OSError, TimeoutError) as exc:
                results[index] = exc  # another service's topic: its failure must not hold back ours
        try:
            async with asyncio.timeout(self._timeout):
                outcomes = await asyncio.gather(*(ack for _, ack in acks), return_exceptions=True)
        except TimeoutError as exc:
            await self._reset(producer)
            raise BrokerUnavailable(f"acks not received: {exc!r}") from exc
        for (index, _), outcome in zip(acks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                results[index] = BrokerUnavailable(repr(outcome))
        return results

    def _refusal(self, message: Message) -> ValueError | None:
        """Why the broker could never take `message` (too large, a topic name Kafka refuses), if it could not."""
        topic, value, _, _ = message
        if len(value) > self._settings.max_message_bytes:
            return ValueError(f"message of {len(value)} bytes exceeds the limit")
        if not TOPIC_NAME.match(topic):
            return ValueError(f"not a valid topic name: {topic[:60]!r}")
        return None

    async def _enqueue(self, producer: AIOKafkaProducer, message: Message) -> "asyncio.Future[object]":
        topic, value, key, headers = message
        wire_headers = self._keys.signed_headers(topic, key, value, headers)
        ack: asyncio.Future[object] = await producer.send(topic, value, key=key, headers=wire_headers)
        if (span := tracing.publish_span(topic, headers)) is not None:
            ack.add_done_callback(lambda _: span.end())
        return ack

    async def _recreate_unknown(self, producer: AIOKafkaProducer, topics: set[str]) -> None:
        """Create our topics the producer's metadata no longer knows, before aiokafka's metadata request
        auto-creates them with broker defaults (wrong partition count, finite retention)."""
        ours = topics & set(self._settings.topics.all())
        if any(producer.client.cluster.partitions_for_topic(t) is None for t in ours):
            await create_missing_topics(self._settings)

    async def _send_once(
        self, producer: AIOKafkaProducer, topic: str, value: bytes, key: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> None:
        await self._recreate_unknown(producer, {topic})
        async with asyncio.timeout(self._timeout):
            ack = await producer.send(topic, value, key=key, headers=headers)
            await ack

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                await ensure_topics(self._settings)
                producer = new_producer(self._settings)
                try:
                    async with asyncio.timeout(self._timeout):
                        await producer.start()
                        for topic in self._settings.topics.all():
                            await producer.partitions_for(topic)
                except (KafkaError, OSError, TimeoutError) as exc:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    where = self._settings.kafka_bootstrap
                    raise BrokerUnavailable(f"cannot connect to {where}: {exc!r}") from exc
                except BaseException:  # cancelled (shutdown, a caller's timeout) half-way through starting it
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _reset(self, producer: AIOKafkaProducer) -> None:
        """Drop a producer that failed, so the next send reconnects and re-ensures topics."""
        async with self._lock:
            current = self._producer
            if current is not producer:
                return
            self._producer = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout):
                await current.stop()

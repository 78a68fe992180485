"""The history projector: folds `P.events` into `run_history`, storing its offsets in the same transaction.

PostgreSQL is the transaction boundary (BROKERS.md): on assignment each partition is sought to the
offset stored with the projection, so a crash neither loses nor doubles an event. Kafka commits are
sent only as a lag hint, and bounded, because they can hang on a restarted test broker.

Only events the service signed are projected (SPEC §7): an unsigned or forged record goes to the DLQ
with that reason, so whoever can write to the topic still cannot change history or statistics.
"""

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consumers.dlq import send_to_dlq
from producers.clients import new_consumer
from producers.pacing import pace_empty_fetches
from producers.publisher import Publisher
from producers.topics import ensure_topics
from schemas.events import lifecycle_event_adapter
from service.config import Settings
from service.history.offsets import load_offsets, store_offsets
from service.history.projection import project, projector_group
from service.ports import BrokerUnavailable
from service.security.event_signing import EventKeys

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 50
MAX_RECORDS = 500
COMMIT_HINT_TIMEOUT = 2.0
MAX_BACKOFF = 5.0
TRANSIENT = (SQLAlchemyError, OSError, KafkaError, BrokerUnavailable, TimeoutError)


def invalid_reason(exc: ValidationError) -> str:
    details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()[:3])
    return f"invalid event: {details}"


class _SeekToStored(ConsumerRebalanceListener):
    def __init__(self, projector: "Projector") -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked) -> None:
        """Nothing to flush: every batch is stored before the next fetch."""

    async def on_partitions_assigned(self, assigned) -> None:
        await self._projector.seek_to_stored(assigned)


class Projector:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 publisher: Publisher | None = None) -> None:
        self._settings = settings
        self._sessions = sessions
        self._topic = settings.topics.events
        self._group = projector_group(settings.topic_prefix)
        self._keys = EventKeys.from_settings(settings)
        self._own_publisher = publisher is None
        self._publisher = publisher or Publisher(settings)
        self._consumer: AIOKafkaConsumer | None = None
        self.assigned = asyncio.Event()

    async def run(self) -> None:
        """Project until cancelled; broker and database outages are waited out with back-off."""
        backoff = 0.2
        while True:
            try:
                await ensure_topics(self._settings)
                break
            except BrokerUnavailable as exc:
                log.warning("projector waiting for the broker: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        if self._own_publisher:
            await self._publisher.start()
        consumer = new_consumer(self._settings, group_id=self._group, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        consumer.subscribe([self._topic], listener=_SeekToStored(self))
        self._consumer = consumer
        try:
            await consumer.start()
            pace_empty_fetches(consumer, FETCH_MAX_WAIT_MS)
            await self._consume(consumer)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), self._settings.kafka_request_timeout_ms / 1000)
            if self._own_publisher:
                await self._publisher.stop()

    async def seek_to_stored(self, assigned) -> None:
        """Resume each assigned partition at the offset stored with the projection, or the beginning."""
        consumer = self._consumer
        if consumer is None:
            return
        async with self._sessions() as session:
            stored = await load_offsets(session, self._group, self._topic)
        for tp in assigned:
            if tp.partition in stored:
                consumer.seek(tp, stored[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        log.info("projector assigned %s, stored offsets %s", sorted(tp.partition for tp in assigned), stored)
        self.assigned.set()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        backoff = 0.2
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
            if not batch:
                continue
            try:
                offsets = await self.apply(batch)
                backoff = 0.2
            except TRANSIENT as exc:
                log.warning("projector batch failed, retrying in %.1fs: %r", backoff, exc)
                for tp, records in batch.items():
                    with contextlib.suppress(KafkaError, AssertionError):
                        consumer.seek(tp, records[0].offset)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            await self._commit_hint(consumer, offsets)

    async def apply(self, batch: dict) -> dict[TopicPartition, int]:
        """Project one fetched batch and store its next offsets, all in one transaction; DLQ records that are
        not ours or not valid."""
        offsets: dict[TopicPartition, int] = {}
        projected = skipped = 0
        async with self._sessions.begin() as session:
            for tp, records in batch.items():
                for record in records:
                    if (refusal := self._keys.refusal(record)) is not None:
                        log.warning("refused the event at %s[%s]@%s: %s", record.topic, record.partition,
                                    record.offset, refusal)
                        await send_to_dlq(self._publisher, self._settings.topics.dlq, record, refusal)
                        continue
                    try:
                        event = lifecycle_event_adapter.validate_json(record.value or b"")
                    except ValidationError as exc:
                        await send_to_dlq(self._publisher, self._settings.topics.dlq, record, invalid_reason(exc))
                    else:
                        if await project(session, event):
                            projected += 1
                        else:
                            skipped += 1
                offsets[tp] = records[-1].offset + 1
            await store_offsets(session, self._group, self._topic, {tp.partition: o for tp, o in offsets.items()})
        log.debug("projected %d events (%d already projected), offsets %s", projected, skipped, offsets)
        return offsets

    async def _commit_hint(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await asyncio.wait_for(consumer.commit(offsets), COMMIT_HINT_TIMEOUT)
        except (KafkaError, TimeoutError) as exc:
            log.debug("projector commit hint failed (offsets are in PostgreSQL): %r", exc)

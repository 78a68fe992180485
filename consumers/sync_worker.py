"""The sync worker's Kafka loop: parse, validate, admit, hand over, commit.

Each request is admitted in one PostgreSQL transaction (ledger + run row, or the recorded answer);
only then is its offset committable. A message that cannot be parsed or validated goes to the DLQ
and the loop goes on. Runs themselves execute in the RunExecutor, so the loop keeps polling (and the
group membership stays alive) however long a run takes.
"""

import asyncio
import contextlib
import logging
import socket
import uuid

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consumers.dlq import send_to_dlq
from consumers.parsing import InvalidRequest, parse_request
from producers.clients import new_consumer
from producers.outbox_relay import OutboxRelay
from producers.pacing import pace_empty_fetches
from producers.publisher import Publisher
from producers.topics import ensure_topics
from service.config import Settings
from service.connectors.base import Connectors
from service.ports import BrokerUnavailable
from service.runs.executor import RunExecutor
from service.runs.lifecycle import admit_request
from service.runs.outbox import add_event

log = logging.getLogger(__name__)
COMMIT_TIMEOUT_SECONDS = 5.0


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: "SyncWorker") -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._worker.commit()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._worker.executor.scan_orphans_soon()


class SyncWorker:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        publisher: Publisher,
        relay: OutboxRelay,
        connectors: Connectors,
        executor: RunExecutor | None = None,
    ) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.sessions = sessions
        self.publisher = publisher
        self.relay = relay
        self.worker_id = settings.worker_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.executor = executor or RunExecutor(settings, sessions, relay, self.worker_id, connectors)
        self._consumer: AIOKafkaConsumer | None = None
        self._done: dict[TopicPartition, int] = {}

    async def run(self) -> None:
        await ensure_topics(self.settings)
        consumer = new_consumer(self.settings, group_id=f"{self.settings.topic_prefix}.worker",
                                fetch_max_wait_ms=self.settings.request_fetch_max_wait_ms)
        consumer.subscribe([self.topics.requested], listener=_Rebalance(self))
        await consumer.start()
        pace_empty_fetches(consumer, self.settings.request_fetch_max_wait_ms)
        self._consumer = consumer
        self.executor.start()
        self.executor.scan_orphans_soon()
        log.info("sync worker %s consuming %s", self.worker_id, self.topics.requested)
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=200)
                for tp, records in batches.items():
                    await self._handle_partition(consumer, tp, records)
                await self.commit()
        finally:
            await self.executor.stop()
            with contextlib.suppress(Exception):
                await self.commit()
            await consumer.stop()
            self._consumer = None

    async def _handle_partition(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                                records: list[ConsumerRecord]) -> None:
        for record in records:
            if not await self.handle(record):
                consumer.seek(tp, record.offset)
                await asyncio.sleep(1.0)
                return
            self._done[tp] = record.offset + 1

    async def handle(self, record: ConsumerRecord) -> bool:
        """Process one request; False when it must be retried (database or broker unavailable)."""
        try:
            event = parse_request(record.value, self.settings.max_message_bytes)
        except InvalidRequest as error:
            return await self._park(record, str(error))
        try:
            async with self.sessions.begin() as session:
                admission = await admit_request(session, event, self.topics, self.worker_id,
                                                self.settings.lease_seconds)
                if admission.action == "answer" and admission.reply is not None and event.reply_to:
                    add_event(session, event.reply_to, admission.reply, key=event.correlation_id)
        except (DataError, IntegrityError) as error:
            return await self._park(record, f"refused by the state store: {type(error.orig).__name__}")
        except Exception:
            log.warning("could not admit request %s; will retry", event.request_id, exc_info=True)
            return False
        if admission.action == "answer":
            self.relay.notify()
        elif admission.action == "schedule" and admission.run_id is not None and admission.batch_id is not None:
            self.executor.submit(admission.run_id, admission.batch_id)
        return True

    async def _park(self, record: ConsumerRecord, reason: str) -> bool:
        """Send a message that can never be processed to the DLQ; False only if the DLQ is unreachable."""
        try:
            await send_to_dlq(self.publisher, self.topics.dlq, record, reason)
        except BrokerUnavailable:
            log.warning("DLQ unavailable; will retry offset %s", record.offset)
            return False
        log.warning("request at %s[%s]@%s sent to the DLQ: %s", record.topic, record.partition, record.offset, reason)
        return True

    async def commit(self) -> None:
        """Commit offsets whose requests are durably admitted; a hint only, bounded in time."""
        consumer, offsets = self._consumer, dict(self._done)
        if consumer is None or not offsets:
            return
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        try:
            await asyncio.wait_for(consumer.commit(offsets), COMMIT_TIMEOUT_SECONDS)
        except Exception as error:
            log.warning("offset commit failed (%r); the next commit covers it", error)
            return
        for tp, offset in offsets.items():
            if self._done.get(tp) == offset:
                del self._done[tp]

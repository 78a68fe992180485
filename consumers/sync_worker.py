"""The sync worker's handler: parse a request, admit it, hand its run over.

Each request is admitted in one durable PostgreSQL transaction (service/runs/requests.py); only then does
the consume loop (consumers/loop.py) commit its offset. A message that cannot be parsed or admitted is
rejected to the DLQ and the loop goes on. Runs execute in the RunExecutor, so the loop keeps polling
(and the group membership stays alive) however long a run takes.
"""

import asyncio
import logging
import socket
import uuid
from collections.abc import Collection
from typing import assert_never

from aiokafka import TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consumers.loop import ConsumeLoop, PerRecord, Record, Rejected, Subscription
from consumers.parsing import InvalidRequest, parse_request
from producers.outbox_relay import OutboxRelay
from producers.publisher import Publisher
from service.config import Settings
from service.connectors.base import Connectors
from service.history.offsets import PgOffsets
from service.ports import OutboxNotifier
from service.runs.executor import RunExecutor
from service.runs.requests import Admission, RequestRefused, admit
from service.runs.retention import prune_periodically
from service.runs.snapshot import run_id_for

log = logging.getLogger(__name__)
MAX_RECORDS = 200
POLL_TIMEOUT_MS = 500


class SyncWorker:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        publisher: Publisher,
        notifier: OutboxNotifier,
        connectors: Connectors,
        executor: RunExecutor | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.notifier = notifier
        self.worker_id = settings.worker_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        sender = notifier if isinstance(notifier, OutboxRelay) else None  # replies leave right after the commit
        self.executor = executor or RunExecutor(settings, sessions, notifier, self.worker_id, connectors,
                                                sender=sender)
        group = f"{settings.topic_prefix}.worker"
        subscription = Subscription(
            name=f"sync worker {self.worker_id}", topic=settings.topics.requested,
            group_id=group, fetch_max_wait_ms=settings.request_fetch_max_wait_ms,
            max_records=MAX_RECORDS, poll_timeout_ms=POLL_TIMEOUT_MS,
        )
        offsets = PgOffsets(sessions, group, settings.topics.requested)
        self.loop = ConsumeLoop(settings, subscription, PerRecord(self.handle, offsets), publisher=publisher,
                                on_assigned=self._assigned)

    async def run(self) -> None:
        """Consume requests until cancelled. The executor's lease renewal and periodic orphan scan start first
        and never wait for a partition assignment: a worker that gets none (a broker whose group is stuck)
        still resumes the runs of a dead worker. Workers also prune what the state store keeps only for a
        while (service/runs/retention.py)."""
        self.executor.start()
        self.executor.scan_orphans_soon()
        pruning = asyncio.create_task(prune_periodically(self.settings, self.sessions), name="pruning")
        try:
            await self.loop.run()
        finally:
            pruning.cancel()
            await asyncio.gather(pruning, return_exceptions=True)
            await self.executor.stop()

    def _assigned(self, _: Collection[TopicPartition]) -> None:
        self.executor.scan_orphans_soon()

    async def handle(self, record: Record) -> None:
        """Admit one request; returns once the admission is durable."""
        try:
            event = parse_request(record.value, self.settings.max_message_bytes)
            if event.slice is not None and event.run_id is not None:
                # A slice of a split run: claimed (or found taken, or ended) when a slot is free; its run's
                # coordinator stored it before the request was published, so there is nothing to admit.
                self.executor.submit_slice(event.run_id, event.slice)
                return
            admission = await admit(self.sessions, event, self.worker_id, self.settings.lease_seconds,
                                    claimer=self.executor)
        except (InvalidRequest, RequestRefused) as error:
            raise Rejected(str(error)) from error
        match admission:
            case Admission.SCHEDULE:
                self.executor.submit(run_id_for(event.request_id), event.batch_id)
            case Admission.ANSWERED:
                self.notifier.notify()
            case Admission.IGNORED:
                pass
            case _:
                assert_never(admission)

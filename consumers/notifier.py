"""The notifier's handler: reads `P.events` and records, for each run's `BatchSyncCompleted`, the notifications it
calls for (service/notify/deliveries.py), storing its offsets in PostgreSQL in the same transaction, as the
projector does (a `PerBatch` handler: a crash neither loses nor doubles a notification, with a consumer group
or with `up` reading every partition itself). The sending happens elsewhere (service/notify/sender.py), so a
slow receiver never holds back this loop, nor any run.

Only events the service signed are considered; the projector already parks forged or invalid records in the
DLQ, so this reader skips them instead of parking them twice.
"""

import logging
from collections.abc import Mapping

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consumers.loop import Batch, ConsumeLoop, PerBatch, Record, Subscription
from producers.publisher import Publisher
from schemas.events import BatchSyncCompleted, lifecycle_event_adapter
from service.config import Settings
from service.history.offsets import load_offsets, store_offsets
from service.notify.deliveries import Defaults, enqueue
from service.positions import Position
from service.security.event_signing import EventKeys

log = logging.getLogger(__name__)

GROUP_SUFFIX = ".notifier"
FETCH_MAX_WAIT_MS = 100
MAX_RECORDS = 500


class NotificationFeed:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], publisher: Publisher) -> None:
        self._sessions = sessions
        self._keys = EventKeys.from_settings(settings)
        self._defaults = Defaults.from_settings(settings)
        self._topic = settings.topics.events
        self._group = settings.topic_prefix + GROUP_SUFFIX
        subscription = Subscription(name="notifier", topic=self._topic, group_id=self._group,
                                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS, max_records=MAX_RECORDS)
        self.loop = ConsumeLoop(settings, subscription, PerBatch(self.apply, self.stored_offsets),
                                publisher=publisher)

    async def run(self) -> None:
        await self.loop.run()

    async def stored_offsets(self) -> Mapping[int, Position]:
        async with self._sessions() as session:
            return await load_offsets(session, self._group, self._topic)

    async def apply(self, batch: Batch) -> None:
        """Record the notifications of one fetched batch and its next offsets, in one transaction."""
        async with self._sessions.begin() as session:
            now = await session.scalar(select(func.now()))
            for records in batch.records.values():
                for record in records:
                    completed = self._completed(record)
                    if completed is not None and now is not None:
                        await enqueue(session, completed, record.value or b"", self._defaults, now)
            await store_offsets(session, self._group, self._topic, batch.positions())

    def _completed(self, record: Record) -> BatchSyncCompleted | None:
        if self._keys.refusal(record) is not None:
            return None
        try:
            event = lifecycle_event_adapter.validate_json(record.value or b"")
        except ValidationError:
            return None
        return event if isinstance(event, BatchSyncCompleted) else None

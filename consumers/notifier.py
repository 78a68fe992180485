"""The notifier's handler: reads `P.events` in its own consumer group and records, for each run's
`BatchSyncCompleted`, the notifications it calls for (service/notify/deliveries.py). The sending happens
elsewhere (service/notify/sender.py), so a slow receiver never holds back this loop, nor any run.

Only events the service signed are considered; the projector already parks forged or invalid records in the
DLQ, so this reader skips them instead of parking them twice.
"""

import logging

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consumers.loop import ConsumeLoop, PerRecord, Record, Subscription
from producers.publisher import Publisher
from schemas.events import BatchSyncCompleted, lifecycle_event_adapter
from service.config import Settings
from service.notify.deliveries import Defaults, enqueue
from service.security.event_signing import EventKeys

log = logging.getLogger(__name__)

GROUP_SUFFIX = ".notifier"
FETCH_MAX_WAIT_MS = 100


class NotificationFeed:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], publisher: Publisher) -> None:
        self._sessions = sessions
        self._keys = EventKeys.from_settings(settings)
        self._defaults = Defaults.from_settings(settings)
        subscription = Subscription(name="notifier", topic=settings.topics.events,
                                    group_id=settings.topic_prefix + GROUP_SUFFIX, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        self.loop = ConsumeLoop(settings, subscription, PerRecord(self.handle), publisher=publisher)

    async def run(self) -> None:
        await self.loop.run()

    async def handle(self, record: Record) -> None:
        if self._keys.refusal(record) is not None:
            return
        try:
            event = lifecycle_event_adapter.validate_json(record.value or b"")
        except ValidationError:
            return
        if not isinstance(event, BatchSyncCompleted):
            return
        async with self._sessions.begin() as session:
            now = await session.scalar(select(func.now()))
            if now is not None and await enqueue(session, event, record.value or b"", self._defaults, now):
                log.debug("run %s: notification recorded", event.run_id)

"""The scheduler loop that `batchsync scheduler` (and `up`) runs: every `scheduler_poll_seconds` it fires due
schedules and resumes failed runs the retry policy covers, in one transaction judged on the state store's clock,
then wakes the outbox relay that publishes the requests. Any number may run side by side (service/scheduling)."""

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.db.failures import database_down
from service.ports import OutboxNotifier
from service.scheduling.retries import Retry, retry_due
from service.scheduling.schedules import Fire, fire_due

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True)
class Tick:
    fires: list[Fire] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)


class Scheduler:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 outbox: OutboxNotifier | None = None) -> None:
        self._settings = settings
        self._sessions = sessions
        self._outbox = outbox

    async def tick(self) -> Tick:
        """One look at the state store: fire what is due, retry what may be retried."""
        async with self._sessions.begin() as session:
            now = (await session.scalar(select(func.now())))
            assert now is not None
            tick = Tick(await fire_due(session, now, self._settings.topics),
                        await retry_due(session, now, self._settings.topics))
        if (tick.fires or tick.retries) and self._outbox is not None:
            self._outbox.notify()
        return tick

    async def run(self) -> None:
        """Tick until cancelled; a state store that is down is waited out with back-off."""
        pause = self._settings.scheduler_poll_seconds
        delay = pause
        log.info("scheduler running, every %.1fs", pause)
        while True:
            try:
                await self.tick()
                delay = pause
            except Exception as error:
                if not database_down(error):
                    log.exception("scheduler tick failed")
                else:
                    log.warning("scheduler: state store unavailable, retrying in %.1fs: %r", delay, error)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
            await asyncio.sleep(delay)

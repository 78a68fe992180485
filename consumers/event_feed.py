"""Lifecycle events as they are published, for a client following a run (`batchsync sync --follow`).

A group-less subscription positioned at the end of every partition of `P.events` before the request is
sent, so no event of the run is missed; what is not a lifecycle event is skipped.
"""

import asyncio
import contextlib

from pydantic import ValidationError

from consumers.loop import ConsumeLoop, PerRecord, Record, Subscription
from schemas.events import LifecycleEvent, lifecycle_event_adapter
from service.config import Settings

FETCH_MAX_WAIT_MS = 50


class EventFeed:
    """`open` it, read `events`, `close` it."""

    def __init__(self, settings: Settings) -> None:
        subscription = Subscription(name="sync --follow", topic=settings.topics.events, group_id=None,
                                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS, ensure_topics=False)
        self._loop = ConsumeLoop(settings, subscription, PerRecord(self._handle))
        self._task: asyncio.Task[None] | None = None
        self.events: asyncio.Queue[LifecycleEvent] = asyncio.Queue()

    async def open(self, wait: float) -> bool:
        """Start reading; False (and stopped) when not positioned at the end within `wait` seconds."""
        self._task = asyncio.create_task(self._loop.run(), name="event-feed")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._loop.ready.wait()
        if not self._loop.ready.is_set():
            await self.close()
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _handle(self, record: Record) -> None:
        with contextlib.suppress(ValidationError):
            self.events.put_nowait(lifecycle_event_adapter.validate_json(record.value or b""))

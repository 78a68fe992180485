"""The API's one reader of `P.events` for live clients: every lifecycle event, as published, into a sink.

Group-less and positioned at the end of every partition (like `sync --follow`, consumers/event_feed.py):
a live view needs what happens from now on, and nothing is committed. One per API process, however many
browsers watch; the sink (service/api/event_hub.EventHub.publish) fans out. What is not a lifecycle
event is skipped: the projector, not a viewer, parks bad records in the DLQ.
"""

import asyncio
import contextlib
from collections.abc import Callable

from pydantic import ValidationError

from consumers.loop import ConsumeLoop, PerRecord, Record, Subscription
from schemas.events import LifecycleEvent, lifecycle_event_adapter
from service.config import Settings

FETCH_MAX_WAIT_MS = 100


class LiveEvents:
    """`run` until cancelled; `ready` is set while positioned on the topic."""

    def __init__(self, settings: Settings, sink: Callable[[LifecycleEvent], None]) -> None:
        subscription = Subscription(name="live events", topic=settings.topics.events, group_id=None,
                                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        self._sink = sink
        self._loop = ConsumeLoop(settings, subscription, PerRecord(self._handle))
        self.ready: asyncio.Event = self._loop.ready

    async def run(self) -> None:
        await self._loop.run()

    async def _handle(self, record: Record) -> None:
        with contextlib.suppress(ValidationError):
            self._sink(lifecycle_event_adapter.validate_json(record.value or b""))

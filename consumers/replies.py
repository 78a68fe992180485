"""The reply listener: every partition of `P.replies` from the end, each signed reply handed to the
request-reply client (producers/request_reply.py) that waits for it.

It has no group, so every API instance reads every reply and picks out its own; unknown correlation ids
are dropped, and so is (with a warning) a reply without the service's signature, so nobody who can write
to the topic can answer a sync in the worker's name.
"""

import asyncio
import contextlib
import logging

from pydantic import ValidationError

from consumers.loop import ConsumeLoop, PerRecord, Record, Subscription
from producers.request_reply import RequestReplyClient
from schemas.events import BatchSyncCompleted
from service.config import Settings
from service.security.event_signing import EventKeys

log = logging.getLogger(__name__)


class ReplyListener:
    def __init__(self, settings: Settings, client: RequestReplyClient) -> None:
        self._settings = settings
        self._client = client
        self._keys = EventKeys.from_settings(settings)
        subscription = Subscription(name="reply listener", topic=settings.topics.replies, group_id=None,
                                    fetch_max_wait_ms=settings.reply_fetch_max_wait_ms)
        self._loop = ConsumeLoop(settings, subscription, PerRecord(self.handle), ready=client.listening)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start listening; waits up to the request timeout for it, then keeps trying in the background."""
        self._task = asyncio.create_task(self._loop.run(), name="reply-listener")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.kafka_request_timeout_ms / 1000):
                await self._client.listening.wait()
        if not self._client.listening.is_set():
            log.warning("reply consumer not connected yet; requests answer BrokerUnavailable until it is")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._client.stop()

    async def handle(self, record: Record) -> None:
        if (refusal := self._keys.refusal(record)) is not None:
            log.warning("ignoring a reply at %s[%s]@%s: %s", record.topic, record.partition, record.offset, refusal)
            return
        if not self._client.waiting:
            return
        try:
            reply = BatchSyncCompleted.model_validate_json(record.value or b"")
        except ValidationError:
            log.debug("ignoring a reply that is not a BatchSyncCompleted at %s/%s", record.partition, record.offset)
            return
        self._client.resolve(reply)

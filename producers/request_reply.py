"""Request-reply over Kafka: a map of correlationId → Future, resolved by a dedicated reply consumer.

The client publishes a request and waits; the reply listener (consumers/replies.py, wired by the
composition root) reads every partition of `P.replies` from the end, so any number of API instances run
side by side and each picks out its own replies, and hands each signed reply to `resolve`. While the
listener is not connected (`listening` clear) a request fails at once with BrokerUnavailable.
"""

import asyncio
import logging

from producers.publisher import Publisher
from schemas.events import BatchSyncCompleted, BatchSyncRequested
from schemas.wire import encode, event_headers, event_key
from service.config import Settings
from service.observability import tracing
from service.ports import BrokerUnavailable

log = logging.getLogger(__name__)


class RequestReplyClient:
    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self._settings = settings
        self._publisher = publisher
        self._pending: dict[str, asyncio.Future[BatchSyncCompleted | None]] = {}
        self.listening = asyncio.Event()
        """Set by the reply listener while it is connected and positioned at the end of every partition."""

    @property
    def waiting(self) -> bool:
        """Whether any request awaits its reply (the listener skips parsing when none does)."""
        return bool(self._pending)

    async def ready(self) -> None:
        """Request-reply can work now (`/readyz`): the reply listener is positioned and the broker answers a
        metadata request on the producer's connection. BrokerUnavailable otherwise; the caller bounds the time."""
        if not self.listening.is_set():
            raise BrokerUnavailable("reply consumer is not connected to the broker")
        await self._publisher.check()

    async def stop(self) -> None:
        """Answer every waiting request with None (no reply)."""
        for future in self._pending.values():
            if not future.done():
                future.set_result(None)
        self._pending.clear()

    async def request(
        self, event: BatchSyncRequested, timeout: float  # noqa: ASYNC109 - the SyncRequester port names it
    ) -> BatchSyncCompleted | None:
        """Publish `event` to `P.requested` and await its reply; None when `timeout` passes first."""
        if not self.listening.is_set():
            raise BrokerUnavailable("reply consumer is not connected to the broker")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        correlation_id = event.correlation_id
        if correlation_id in self._pending:
            raise ValueError(f"a request with correlationId {correlation_id} is already waiting")
        future: asyncio.Future[BatchSyncCompleted | None] = loop.create_future()
        self._pending[correlation_id] = future
        try:
            topic = self._settings.topics.requested
            with tracing.publishing(topic, event_headers(event)) as headers:
                await self._publisher.send(topic, encode(event), key=event_key(event), headers=headers)
            try:
                async with asyncio.timeout_at(deadline):
                    return await future
            except TimeoutError:
                return None
        finally:
            self._pending.pop(correlation_id, None)

    def resolve(self, reply: BatchSyncCompleted) -> None:
        """Hand a reply to the request waiting for its correlationId; one nobody waits for is dropped."""
        future = self._pending.get(reply.correlation_id)
        if future is not None and not future.done():
            future.set_result(reply)

"""Fan-out of the lifecycle events to the API's live clients (the console's server-sent events).

One group-less reader of `P.events` per API process (consumers/live_events.py) publishes into the hub;
every open stream holds a bounded queue of its own. A client too slow to keep up is not allowed to hold
the reader back or grow memory: its queue is closed and it reconnects, reloading what it shows.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from schemas.events import LifecycleEvent

QUEUE_SIZE = 1000
"""Events a stream may lag behind before it is dropped (progress is throttled to a few a second per run)."""


class Subscriber:
    """One live stream's queue; `None` in it means the hub dropped the stream."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[LifecycleEvent | None] = asyncio.Queue(size + 1)
        self.size = size
        self.dropped = False

    def offer(self, event: LifecycleEvent) -> None:
        if self.dropped:
            return
        if self.queue.qsize() >= self.size:
            self.end()
            return
        self.queue.put_nowait(event)

    def end(self) -> None:
        """No more events: the stream ends once it has sent what is queued (there is always room for the end)."""
        if not self.dropped:
            self.dropped = True
            self.queue.put_nowait(None)

    async def next(self) -> LifecycleEvent | None:
        """The next event; None once the hub dropped this stream."""
        return None if self.dropped and self.queue.empty() else await self.queue.get()


@dataclass
class EventHub:
    """`publish` from the reader, `subscribe` per stream; never blocks the publisher."""

    queue_size: int = QUEUE_SIZE
    subscribers: set[Subscriber] = field(default_factory=set)
    closed: bool = False

    def publish(self, event: LifecycleEvent) -> None:
        for subscriber in list(self.subscribers):
            subscriber.offer(event)

    def close(self) -> None:
        """End every stream, and any opened later: the server is stopping, and it waits for open answers
        to finish before it stops (a stream never would)."""
        self.closed = True
        for subscriber in list(self.subscribers):
            subscriber.end()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscriber]:
        subscriber = Subscriber(self.queue_size)
        if self.closed:
            subscriber.end()
        self.subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)

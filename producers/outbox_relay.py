"""Publish committed outbox rows to Kafka and mark them sent: events leave only after their state commits.

The rows come through the `OutboxStore` port (`service/runs/outbox.py` owns the table and its SQL; the
composition root hands it over), so this module knows the broker and nothing of the state store. A row is
marked published only after its ack, so a broker outage delays rows but never drops one; a row the broker
refuses on its own is retried a bounded number of times by the store's count, and never blocks the others.
Published rows are deleted only after the store's retention: until then the reconciler
(consumers/outbox_reconciler.py) can queue again what a broker acknowledged and then lost.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from producers.publisher import Publisher
from service.ports import BrokerUnavailable, OutboxMessage, OutboxStore, StateStoreUnavailable

log = logging.getLogger(__name__)

BATCH_SIZE = 200
IDLE_WAIT = 1.0
MAX_BACKOFF = 5.0
CLEANUP_EVERY = 60.0


class OutboxRelay:
    def __init__(self, store: OutboxStore, publisher: Publisher,
                 batch_size: int = BATCH_SIZE, cleanup_every: float = CLEANUP_EVERY) -> None:
        self._store = store
        self._publisher = publisher
        self._batch_size = batch_size
        self._cleanup_every = cleanup_every
        self._wake = asyncio.Event()
        self._last_cleanup = time.monotonic()

    def notify(self) -> None:
        """New rows were committed: publish them now rather than at the next poll."""
        self._wake.set()

    async def send_now(self, messages: Sequence[OutboxMessage]) -> list[int]:
        """The `ReplySender`: publish these committed rows now (a reply the API waits for), without waiting for
        the drain's claim; returns the ids acknowledged. What is not acknowledged the drain publishes."""
        try:
            results = await self._publisher.send_many(
                [(m.topic, m.value, m.key, dict(m.headers or {})) for m in messages])
        except BrokerUnavailable as exc:
            log.info("direct reply not sent, the relay will: %r", exc)
            return []
        for message, error in zip(messages, results, strict=True):
            if error is not None:
                log.info("direct reply to %s not sent, the relay will: %r", message.topic, error)
        return [message.id for message, error in zip(messages, results, strict=True) if error is None]

    async def drain_once(self) -> int:
        """Publish every unpublished row in id order; returns how many were published."""
        total = 0
        while True:
            published, claimed = await self._publish_batch()
            total += published
            if claimed < self._batch_size or published < claimed:
                return total

    async def run(self) -> None:
        """Drain on every notify (or each second) until cancelled; back off while the broker or DB is down."""
        backoff = 0.1
        while True:
            self._wake.clear()
            try:
                await self.drain_once()
                await self._maybe_cleanup()
                backoff = 0.1
            except (BrokerUnavailable, StateStoreUnavailable, OSError) as exc:
                log.warning("outbox relay failed, retrying in %.1fs: %r", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            with contextlib.suppress(TimeoutError):  # not wait_for: on 3.11 it can drop a cancel, and stop() hangs
                async with asyncio.timeout(IDLE_WAIT):
                    await self._wake.wait()

    async def _publish_batch(self) -> tuple[int, int]:
        async with self._store.claim(self._batch_size) as claim:
            rows = claim.messages
            if not rows:
                return 0, 0
            results = await self._publisher.send_many(
                [(r.topic, r.value, r.key, dict(r.headers or {})) for r in rows])
            sent = [row.id for row, error in zip(rows, results, strict=True) if error is None]
            for row, error in zip(rows, results, strict=True):
                if error is not None:
                    gave_up = " (giving up)" if await claim.refused(row.id, error) else ""
                    log.error("outbox row %s to %s not published%s: %r", row.id, row.topic, gave_up, error)
            await claim.published(sent)
        return len(sent), len(rows)

    async def _maybe_cleanup(self) -> None:
        if time.monotonic() - self._last_cleanup < self._cleanup_every:
            return
        self._last_cleanup = time.monotonic()
        deleted = await self._store.delete_published()
        if deleted:
            log.info("deleted %d outbox rows published longer ago than their retention", deleted)

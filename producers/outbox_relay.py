"""Publish committed outbox rows to Kafka and mark them sent: events leave only after their state commits.

Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several relays can run side by side; a row is
marked published only after its ack, so a broker outage delays rows but never drops one. A row the
broker refuses on its own (too large, a reply topic that cannot exist) is retried MAX_ATTEMPTS times
and then left in the table with its last error, so it cannot block the rows behind it.
"""

import asyncio
import contextlib
import logging
import time

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from producers.publisher import Publisher
from service.db.models import Outbox
from service.ports import BrokerUnavailable

log = logging.getLogger(__name__)

BATCH_SIZE = 200
IDLE_WAIT = 1.0
MAX_BACKOFF = 5.0
CLEANUP_EVERY = 60.0
KEEP_PUBLISHED = text("interval '1 hour'")
MAX_ATTEMPTS = 10


class OutboxRelay:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], publisher: Publisher,
                 batch_size: int = BATCH_SIZE, cleanup_every: float = CLEANUP_EVERY) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._batch_size = batch_size
        self._cleanup_every = cleanup_every
        self._wake = asyncio.Event()
        self._last_cleanup = time.monotonic()

    def notify(self) -> None:
        """New rows were committed: publish them now rather than at the next poll."""
        self._wake.set()

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
            except (BrokerUnavailable, SQLAlchemyError, OSError) as exc:
                log.warning("outbox relay failed, retrying in %.1fs: %r", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_WAIT)

    async def _publish_batch(self) -> tuple[int, int]:
        async with self._sessions.begin() as session:
            rows = (await session.scalars(
                select(Outbox)
                .where(Outbox.published_at.is_(None), Outbox.attempts < MAX_ATTEMPTS)
                .order_by(Outbox.id)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            )).all()
            if not rows:
                return 0, 0
            results = await self._publisher.send_many([(r.topic, r.value, r.key, r.headers) for r in rows])
            sent = [row.id for row, error in zip(rows, results, strict=True) if error is None]
            for row, error in zip(rows, results, strict=True):
                if error is not None:
                    row.attempts += 1
                    row.last_error = repr(error)[:1000]
                    gave_up = " (giving up)" if row.attempts >= MAX_ATTEMPTS else ""
                    log.error("outbox row %s to %s not published%s: %r", row.id, row.topic, gave_up, error)
            if sent:
                await session.execute(update(Outbox).where(Outbox.id.in_(sent)).values(published_at=func.now()))
        return len(sent), len(rows)

    async def _maybe_cleanup(self) -> None:
        if time.monotonic() - self._last_cleanup < self._cleanup_every:
            return
        self._last_cleanup = time.monotonic()
        async with self._sessions.begin() as session:
            deleted = (await session.scalars(
                delete(Outbox).where(Outbox.published_at < func.now() - KEEP_PUBLISHED).returning(Outbox.id)
            )).all()
        if deleted:
            log.info("deleted %d outbox rows published over an hour ago", len(deleted))

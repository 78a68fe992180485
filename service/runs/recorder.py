"""The engine's observer for one run: persists progress, throttles progress events, relays cancels."""

import time
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.events import BatchRowRejected, BatchSyncProgress, RunPhase
from schemas.topics import Topics
from service.connectors.base import RejectedRow
from service.db import driver
from service.db.models import Run
from service.ports import OutboxNotifier
from service.runs.lifecycle import PRODUCER, begin_finishing, record_progress, record_start
from service.runs.outbox import add_event
from service.sync.errors import RunCancelled
from service.sync.model import ProgressUpdate
from service.sync.rejects import event_id


class LeaseLost(Exception):
    """Another worker took this run over; stop without touching it."""


class RunRecorder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        run: Run,
        worker_id: str,
        topics: Topics,
        notifier: OutboxNotifier,
        progress_interval: float,
    ) -> None:
        self._sessions = sessions
        self._run = run
        self._worker_id = worker_id
        self._topics = topics
        self._notifier = notifier
        self._interval = progress_interval
        self._started = time.monotonic()
        self._last_event = self._started
        self._total_estimate: int | None = None
        self.cancelled_by: str | None = run.cancel_requested_by
        self.lost = False
        self.start: tuple[int, int | None] = (run.resumed_from_chunk, run.total_estimate)
        """Where the engine resumed and what it expects; recorded with the first write after it."""
        self.start_recorded = False
        self.last: ProgressUpdate | None = None

    async def on_start(self, resumed_from_chunk: int, total_estimate: int | None) -> None:
        """Remember the start; the Started event is written with the first progress or the outcome, which
        saves a transaction per run (its `startedAt` is the claim time either way)."""
        self._total_estimate = total_estimate
        self.start = (resumed_from_chunk, total_estimate)

    def pending_start(self) -> tuple[int, int | None] | None:
        return None if self.start_recorded else self.start

    async def on_chunk(self, update: ProgressUpdate) -> None:
        """Mirror progress at most every `progress_interval`: the target holds the real checkpoint, and a
        run shorter than the interval is told by its Completed event alone. The same write learns of a
        cancel, so a cancel takes effect within one interval."""
        if self.lost:
            raise LeaseLost(str(self._run.id))
        self.last = update
        now = time.monotonic()
        if now - self._last_event < self._interval:
            return
        await self._record(update, now)

    async def on_phase(self, update: ProgressUpdate) -> None:
        """Tell a new phase at once, unthrottled, once the run has lasted a progress interval: a follower
        sees `publishing` instead of a bar standing still; a run shorter than that is still told by its
        Completed event alone."""
        if self.lost:
            raise LeaseLost(str(self._run.id))
        if update.phase is RunPhase.PUBLISHING:
            await self._begin_finishing()
        now = time.monotonic()
        if now - self._started >= self._interval:
            await self._record(update, now)

    async def _begin_finishing(self) -> None:
        """Past here a cancel is answered as too late (lifecycle.begin_finishing); one accepted before stops
        the run now, whatever the cached flag the engine last read said."""
        async with driver.transaction(self._sessions) as conn:
            gate = await begin_finishing(conn, self._run.id, self._worker_id)
        if not gate.still_ours:
            self.lost = True
            raise LeaseLost(str(self._run.id))
        if gate.cancelled_by is not None:
            self.cancelled_by = self.cancelled_by or gate.cancelled_by
            raise RunCancelled()

    async def _record(self, update: ProgressUpdate, now: float) -> None:
        """Mirror `update` on the run and queue its Progress event, in one transaction."""
        self._last_event = now
        elapsed = max(now - self._started, 1e-6)
        event = BatchSyncProgress(
            correlation_id=self._run.correlation_id, batch_id=self._run.batch_id, run_id=self._run.id,
            producer=PRODUCER, chunk=update.chunk, records_read=update.records_read,
            records_written=update.records_written,
            total_estimate=update.total_estimate if update.total_estimate is not None else self._total_estimate,
            elapsed_ms=int(elapsed * 1000), records_per_second=round(update.records_written / elapsed, 1),
            phase=update.phase,
        )
        async with self._sessions.begin() as session:
            if not self.start_recorded:
                await record_start(session, self._run, self._topics, *self.start)
            progressed = await record_progress(
                session, self._run, self._worker_id, chunk=update.chunk, records_read=update.records_read,
                records_written=update.records_written, checkpoint=update.checkpoint, event=event,
                topics=self._topics, records_rejected=update.records_rejected,
            )
        if not progressed.still_ours:
            self.lost = True
            raise LeaseLost(str(self._run.id))
        self.start_recorded = True
        self.cancelled_by = self.cancelled_by or progressed.cancelled_by
        self._notifier.notify()

    async def on_rejected(self, chunk: int, rows: list[RejectedRow]) -> None:
        """Queue the chunk's rejected rows for `P.rejected` in one transaction, unthrottled."""
        if self.lost:
            raise LeaseLost(str(self._run.id))
        await tell_rejected(self._sessions, self._topics, self._run, self._run.checkpoint_key, chunk, rows)
        self._notifier.notify()

    def cancel_requested(self) -> bool:
        return self.cancelled_by is not None


async def tell_rejected(sessions: async_sessionmaker[AsyncSession], topics: Topics, run: Run, key: uuid.UUID,
                        chunk: int, rows: list[RejectedRow]) -> None:
    """Queue rows a chunk set aside for `P.rejected`, in one transaction. Their event ids derive from the
    checkpoint chain `key` (a run's, or a slice's), the chunk and the order, so rows told again after a resume
    are the same events (readers dedupe by eventId)."""
    async with sessions.begin() as session:
        for index, row in enumerate(rows):
            add_event(session, topics.rejected, BatchRowRejected(
                event_id=event_id(key, chunk, index), correlation_id=run.correlation_id, batch_id=run.batch_id,
                run_id=run.id, producer=PRODUCER, chunk=chunk, row=row.row, reason=row.reason))

"""The engine's observer for one slice: mirrors its counts on the slice row, tells its rejected rows, relays a
cancel of its run. The run's progress events are the coordinator's (the sums); a slice tells its own end only,
with `BatchSliceCompleted` (service/slicing/store.py)."""

import time
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.topics import Topics
from service.connectors.base import RejectedRow
from service.db.models import Run
from service.ports import OutboxNotifier
from service.runs.recorder import LeaseLost, tell_rejected
from service.slicing import store
from service.sync.errors import RunCancelled
from service.sync.model import ProgressUpdate


class SliceRecorder:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], run: Run, number: int, key: uuid.UUID,
                 worker_id: str, topics: Topics, notifier: OutboxNotifier, progress_interval: float) -> None:
        self._sessions, self._run, self.number, self._key = sessions, run, number, key
        self._worker_id, self._topics, self._notifier = worker_id, topics, notifier
        self._interval = progress_interval
        self._last = time.monotonic()
        self.cancelled_by: str | None = run.cancel_requested_by
        self.lost = False
        self.last: ProgressUpdate | None = None

    async def on_start(self, *_: object) -> None:
        return None

    async def on_chunk(self, update: ProgressUpdate) -> None:
        """Mirror the slice's counts at most every progress interval; the same write learns of a cancel."""
        if self.lost:
            raise LeaseLost(f"{self._run.id}/{self.number}")
        self.last = update
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        await self._mirror(update)

    async def _mirror(self, update: ProgressUpdate) -> None:
        async with self._sessions.begin() as session:
            told = await store.record_progress(
                session, self._run.id, self.number, self._worker_id, chunks=update.chunk,
                records_read=update.records_read, records_written=update.records_written,
                records_rejected=update.records_rejected)
        if told is False:
            self.lost = True
            raise LeaseLost(f"{self._run.id}/{self.number}")
        self.cancelled_by = self.cancelled_by or (told if isinstance(told, str) else None)

    async def on_phase(self, update: ProgressUpdate) -> None:
        """A slice's end (staged, or written) is no point of no return: the run's publishing is. A cancel asked
        until now stops the slice."""
        await self._mirror(update)
        if self.cancelled_by is not None:
            raise RunCancelled()

    async def on_rejected(self, chunk: int, rows: list[RejectedRow]) -> None:
        """As `RunRecorder.on_rejected`, with ids derived from the slice's own checkpoint chain."""
        if self.lost:
            raise LeaseLost(f"{self._run.id}/{self.number}")
        await tell_rejected(self._sessions, self._topics, self._run, self._key, chunk, rows)
        self._notifier.notify()

    def cancel_requested(self) -> bool:
        return self.cancelled_by is not None

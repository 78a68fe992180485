"""The run of a split batch, as the worker that claimed it sees it: plan, request the slices, wait, publish.

The coordinator holds the run (its lease, its progress, its outcome) but no rows: the slices move them, each
as its own request on `P.requested`, so the consumer group spreads them over every worker (docs/spec.md §10).
It waits for them without a worker slot (a slot is for moving rows), tells the sums as the run's progress, and
once every slice has ended: an overwrite's stages are published at once (`engine.publish_slices`), and the
run ends SUCCESS only if every slice did. A coordinator that dies is replaced like any run whose lease
expired: the next one finds the plan stored and goes on waiting.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.api import SplitSpec, WriteMode
from schemas.events import ErrorCode, RunPhase
from schemas.messages import RUN_CANCELLED, slice_failed
from schemas.status import RunStatus
from schemas.topics import Topics
from service.config import Settings
from service.connectors.base import Connectors
from service.db.models import Run
from service.ports import OutboxNotifier
from service.runs.recorder import LeaseLost, RunRecorder
from service.slicing import store
from service.slicing.planner import plan_slices
from service.slicing.ranges import slice_key
from service.sync.engine import plan_split, publish_slices
from service.sync.errors import RunCancelled, SyncError
from service.sync.model import ProgressUpdate, RunResult, RunSpec
from service.sync.retry import RetryPolicy

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0
"""How often the coordinator looks at its slices when no local slice told it that one ended."""


class SliceFailed(SyncError):
    """A slice failed: the run fails with the slice's error code and a message naming the slice."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass
class Coordinator:
    sessions: async_sessionmaker[AsyncSession]
    run: Run
    worker_id: str
    settings: Settings
    connectors: Connectors
    notifier: OutboxNotifier

    def __post_init__(self) -> None:
        self.nudge = asyncio.Event()
        """Set when a slice of this run ends on this worker, so the run ends without waiting a poll."""

    @property
    def _topics(self) -> Topics:
        return self.settings.topics

    async def execute(self, spec: RunSpec, recorder: RunRecorder, split: SplitSpec) -> RunResult:
        try:
            return await self._execute(spec, recorder, split)
        except asyncio.CancelledError:
            if not recorder.cancel_requested():
                raise
            with contextlib.suppress(Exception):
                await self._cancel_pending()
            raise RunCancelled() from None

    async def _execute(self, spec: RunSpec, recorder: RunRecorder, split: SplitSpec) -> RunResult:
        estimate = await self._ensure_plan(spec, split)
        await recorder.on_start(0, estimate)
        cancelled = False
        while True:
            async with self.sessions.begin() as session:
                tally = await store.tally(session, self.run.id)
            if recorder.cancel_requested() and not cancelled:
                await self._cancel_pending()
                cancelled = True
                continue
            await recorder.on_chunk(ProgressUpdate(
                chunk=tally.chunks, records_read=tally.records_read, records_written=tally.records_written,
                total_estimate=estimate, checkpoint=None, records_rejected=tally.records_rejected))
            if tally.ended:
                break
            with contextlib.suppress(TimeoutError):  # not wait_for: on 3.11 it can drop a cancel (consumers/loop.py)
                async with asyncio.timeout(POLL_SECONDS):
                    await self.nudge.wait()
            self.nudge.clear()
        keys = [str(slice_key(self.run.checkpoint_key, number)) for number in range(tally.total)]
        if recorder.cancel_requested() or tally.by_status.get(RunStatus.CANCELLED):
            await self._abandon(spec, keys)
            raise RunCancelled()
        if not tally.succeeded:
            async with self.sessions.begin() as session:
                failed = await store.first_failure(session, self.run.id)
            code = ErrorCode(failed.error_code) if failed and failed.error_code else ErrorCode.INTERNAL
            number, message = (failed.slice, failed.message or "") if failed else (-1, "")
            raise SliceFailed(code, slice_failed(number, message))
        update = ProgressUpdate(chunk=tally.chunks, records_read=tally.records_read,
                                records_written=tally.records_written, total_estimate=estimate, checkpoint=None,
                                phase=RunPhase.PUBLISHING, records_rejected=tally.records_rejected)
        await recorder.on_phase(update)  # past here a cancel is too late (lifecycle.begin_finishing)
        recorder.last = update
        reconciled = await publish_slices(
            spec, keys, read=tally.records_read, written=tally.records_written, rejected=tally.records_rejected,
            connectors=self.connectors, connect_timeout=self.settings.connect_timeout_seconds,
            io_timeout=self.settings.io_timeout_seconds, policy=self._policy)
        return RunResult(
            records_read=tally.records_read, records_written=tally.records_written, chunks=tally.chunks,
            resumed_from_chunk=0, records_rejected=tally.records_rejected,
            source_count=reconciled.source_count if reconciled else None,
            target_count=reconciled.target_count if reconciled else None,
            reconciled=reconciled.reconciled if reconciled else None,
        )

    @property
    def _policy(self) -> RetryPolicy:
        return RetryPolicy(budget=self.settings.transient_retry_seconds)

    async def _ensure_plan(self, spec: RunSpec, split: SplitSpec) -> int | None:
        """The run's plan: the stored one (this coordinator replaces one that died), the one of the run a retry
        resumes, or a new one planned from the data. Stored with the slices' requests in one transaction."""
        async with self.sessions.begin() as session:
            run = await session.get(Run, self.run.id, populate_existing=True)
            if run is None or run.owner != self.worker_id:
                raise LeaseLost(str(self.run.id))
            if run.slices is not None:
                return run.total_estimate
            if run.resumed_from_run_id is not None and await store.carry_plan(
                    session, run, run.resumed_from_run_id, self._topics, self.worker_id, self.settings.lease_seconds):
                log.info("run %s resumes the slices of run %s", run.id, run.resumed_from_run_id)
                self.notifier.notify()
                return run.total_estimate
        plan = await plan_split(spec, lambda source: plan_slices(source, split), connectors=self.connectors,
                                connect_timeout=self.settings.connect_timeout_seconds,
                                io_timeout=self.settings.io_timeout_seconds, policy=self._policy)
        async with self.sessions.begin() as session:
            run = await session.get(Run, self.run.id, populate_existing=True)
            if run is None or not await store.store_plan(session, run, plan.ranges, self._topics, self.worker_id,
                                                            self.settings.lease_seconds):
                raise LeaseLost(str(self.run.id))
        log.info("run %s of batch %s planned into %d slices by %s", self.run.id, self.run.batch_id,
                 len(plan.ranges), split.column)
        self.notifier.notify()
        return plan.total_estimate

    async def _cancel_pending(self) -> None:
        async with self.sessions.begin() as session:
            await store.cancel_pending(session, self.run, RUN_CANCELLED, self._topics)
        self.notifier.notify()

    async def _abandon(self, spec: RunSpec, keys: list[str]) -> None:
        """A cancelled overwrite drops what its slices staged (best effort: the table stays as it was anyway)."""
        if spec.target.mode is not WriteMode.OVERWRITE:
            return
        try:
            async with asyncio.timeout(self.settings.connect_timeout_seconds + 5.0):
                async with self.connectors.target_for(spec.target_endpoint, spec.target,
                                                      self.settings.connect_timeout_seconds) as target:
                    for key in keys:
                        await target.abandon(key)
        except Exception as exc:
            log.warning("run %s: what its slices staged could not be dropped after the cancel: %s", self.run.id, exc)

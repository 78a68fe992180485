"""Runs the runs a worker owns: one at a time per batch, up to WORKER_CONCURRENCY at once.

It also keeps the worker's leases alive (and learns of cancels that way), and takes over runs whose
owner died. Free of Kafka: the sync worker feeds it run ids, the outbox relay carries its events.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, Literal

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.api import SplitSpec
from schemas.events import ErrorCode
from schemas.messages import INTERNAL_ERROR, SYNC_SUCCEEDED, counts_differ, located
from schemas.status import RunStatus
from service.config import Settings
from service.connectors.base import Connectors
from service.db import driver
from service.db.models import Run
from service.observability.runs import observed_run, run_ended
from service.ports import OutboxNotifier, ReplySender
from service.runs import lifecycle, outbox
from service.runs.recorder import LeaseLost, RunRecorder
from service.runs.spec import load_spec
from service.runs.status import status_for_error
from service.security.policy import AccessPolicy
from service.slicing import store as slices
from service.slicing.coordinator import Coordinator
from service.slicing.ranges import SliceRange, slice_key
from service.slicing.recorder import SliceRecorder
from service.sync.errors import RunCancelled, SyncError
from service.sync.model import RunObserver, RunResult, RunSpec
from service.sync.retry import RetryPolicy

log = logging.getLogger(__name__)

Execute = Callable[..., Coroutine[Any, Any, RunResult]]
CANCEL_GRACE_SECONDS = 2.0
DIRECT_REPLY_SECONDS = 2.0
"""How long a finished run waits for its replies' direct send before leaving them to the outbox relay."""
Claimed = tuple[Run, RunSpec | SyncError]


def _split_of(run: Run) -> SplitSpec | None:
    """The split of a run's config snapshot: such a run is coordinated, its slices move the rows."""
    split = (run.config or {}).get("split")
    return SplitSpec.model_validate(split) if split else None


class RunExecutor:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        notifier: OutboxNotifier,
        worker_id: str,
        connectors: Connectors,
        execute: Execute | None = None,
        sender: ReplySender | None = None,
    ) -> None:
        """`connectors` builds each run's source and target (the composition root passes the registry's);
        `execute` stands in for the engine in tests; `sender` publishes a run's replies right after its
        completion commits, ahead of the outbox relay (which still publishes them)."""
        if execute is None:
            from service.sync.engine import execute as engine_execute

            execute = engine_execute
        self._connectors = connectors
        self._settings = settings
        self._policy = AccessPolicy.from_settings(settings)
        self._sessions = sessions
        self._notifier = notifier
        self._sender = sender
        self.worker_id = worker_id
        self._execute = execute
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._batch_locks: dict[int, asyncio.Lock] = {}
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._recorders: dict[uuid.UUID, RunRecorder] = {}
        self._claimed: dict[uuid.UUID, Claimed] = {}
        """Runs claimed by their admission's transaction, waiting for `submit`."""
        self._engines: dict[uuid.UUID, asyncio.Task[RunResult]] = {}
        self._interrupting: set[uuid.UUID | slices.SliceId] = set()
        self._background: list[asyncio.Task[None]] = []
        self._scan_now = asyncio.Event()
        self._slice_tasks: dict[slices.SliceId, asyncio.Task[None]] = {}
        self._slice_recorders: dict[slices.SliceId, SliceRecorder] = {}
        self._slice_engines: dict[slices.SliceId, asyncio.Task[RunResult]] = {}
        self._coordinators: dict[uuid.UUID, Coordinator] = {}

    # --- lifecycle ---

    def start(self) -> None:
        self._background = [
            asyncio.create_task(self._lease_loop(), name="lease-renewal"),
            asyncio.create_task(self._orphan_loop(), name="orphan-scan"),
        ]

    async def stop(self) -> None:
        """Stop runs and slices at once and expire their leases, so another worker resumes them without waiting."""
        tasks = [*self._background, *self._tasks.values(), *self._slice_tasks.values()]
        owned, owned_slices = list(self._tasks), list(self._slice_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with self._sessions.begin() as session:
                await lifecycle.release(session, self.worker_id, owned)
                await slices.release(session, self.worker_id, owned_slices)

    def scan_orphans_soon(self) -> None:
        self._scan_now.set()

    # --- runs ---

    def submit(self, run_id: uuid.UUID, batch_id: int) -> None:
        if run_id in self._tasks:
            return
        task = asyncio.create_task(self._serially(run_id, batch_id), name=f"run-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run_id, None))

    async def _serially(self, run_id: uuid.UUID, batch_id: int) -> None:
        """Run under the batch's lock and a slot. While another run of the batch is RUNNING (on another
        worker, or an orphan this worker is about to resume), wait *without* the lock and the slot, so
        that run can proceed here."""
        while True:
            lock = self._batch_locks.setdefault(batch_id, asyncio.Lock())
            try:
                async with lock:
                    async with self._slots:
                        claimed = await self._claim(run_id)
                        if isinstance(claimed, tuple) and _split_of(claimed[0]) is None:
                            await self._run(*claimed)
                            return
                    if isinstance(claimed, tuple):  # a split run waits for its slices without a slot
                        await self._run(*claimed)
                    if claimed != "busy":
                        return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("run %s stopped by an unexpected error; its lease will expire and it resumes", run_id)
                return
            finally:
                if not lock.locked() and self._batch_locks.get(batch_id) is lock:
                    self._batch_locks.pop(batch_id, None)
            await asyncio.sleep(1.0)

    def can_start(self, batch_id: int) -> bool:
        """Whether a run of `batch_id` submitted now would start at once: a free slot and no local run of
        the batch (requests.Claimer: then the admission's transaction claims it)."""
        return not self._slots.locked() and batch_id not in self._batch_locks

    async def claimed(self, conn: asyncpg.Connection, run: Run) -> None:
        """The admission claimed `run` in its driver transaction `conn`: read its spec there too, for `submit`."""
        self._claimed[run.id] = (run, await self._spec_of(conn, run))

    def forget(self, run_id: uuid.UUID) -> None:
        self._claimed.pop(run_id, None)

    async def _spec_of(self, conn: asyncpg.Connection, run: Run) -> RunSpec | SyncError:
        try:
            return await load_spec(conn, run, self._settings.chunk_size, self._policy)
        except SyncError as error:
            return error

    async def _claim(self, run_id: uuid.UUID) -> Claimed | Literal["busy"] | None:
        """Claim the run and read its spec in one transaction (unless its admission did both already);
        "busy" while another run of the batch runs."""
        if (claimed := self._claimed.pop(run_id, None)) is not None:
            return claimed
        try:
            async with driver.transaction(self._sessions) as conn:
                run = await lifecycle.claim(conn, run_id, self.worker_id, self._settings.lease_seconds)
                if run is None:
                    return None
                return run, await self._spec_of(conn, run)
        except lifecycle.ClaimBusy:
            return "busy"

    async def _run(self, run: Run, spec: "RunSpec | SyncError") -> None:
        with observed_run(run.id, run.batch_id, run.correlation_id, run.trigger):
            await self._run_observed(run, spec)

    async def _run_observed(self, run: Run, spec: "RunSpec | SyncError") -> None:
        run_id = run.id
        if run.cancel_requested_by:
            await self._finish(run_id, ErrorCode.CANCELLED, RunCancelled().reason)
            return
        recorder = RunRecorder(self._sessions, run, self.worker_id, self._settings.topics, self._notifier,
                               self._settings.progress_interval_seconds)
        self._recorders[run_id] = recorder
        try:
            if isinstance(spec, SyncError):
                raise spec
            observer: RunObserver = recorder
            split = _split_of(run)
            if split is not None:
                coordinator = Coordinator(self._sessions, run, self.worker_id, self._settings, self._connectors,
                                          self._notifier)
                self._coordinators[run_id] = coordinator
                work = coordinator.execute(spec, recorder, split)
            else:
                work = self._engine(spec, observer)
            engine = asyncio.create_task(work)
            self._engines[run_id] = engine
            result = await engine
        except LeaseLost:
            log.warning("run %s was taken over by another worker", run_id)
        except RunCancelled as cancelled:
            await self._finish(run_id, ErrorCode.CANCELLED, cancelled.reason, recorder)
        except SyncError as error:
            await self._finish(run_id, error.code, error.reason, recorder)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run %s failed unexpectedly", run_id)
            await self._finish(run_id, ErrorCode.INTERNAL, INTERNAL_ERROR, recorder)
        else:
            message = SYNC_SUCCEEDED
            if result.reconciled is False and result.source_count is not None and result.target_count is not None:
                message = located(SYNC_SUCCEEDED, counts_differ(result.source_count, result.target_count))
            await self._finish(
                run_id, None, message, recorder, records_read=result.records_read,
                records_written=result.records_written, chunks=result.chunks,
                records_rejected=result.records_rejected, source_count=result.source_count,
                target_count=result.target_count, reconciled=result.reconciled,
                high_water_mark=result.high_water_mark,
            )
        finally:
            self._recorders.pop(run_id, None)
            self._engines.pop(run_id, None)
            self._coordinators.pop(run_id, None)
            self._interrupting.discard(run_id)

    def _engine(self, spec: RunSpec, observer: RunObserver) -> Coroutine[Any, Any, RunResult]:
        """The engine on `spec` (a run, or one slice of it) with this worker's timeouts and retry budget."""
        return self._execute(spec, observer, connectors=self._connectors,
                             connect_timeout=self._settings.connect_timeout_seconds,
                             io_timeout=self._settings.io_timeout_seconds,
                             policy=RetryPolicy(budget=self._settings.transient_retry_seconds))

    async def _finish(
        self,
        run_id: uuid.UUID,
        error_code: ErrorCode | None,
        message: str,
        recorder: RunRecorder | None = None,
        **counts: object,
    ) -> None:
        if recorder is not None and recorder.last is not None and not counts:
            counts = {"records_read": recorder.last.records_read, "records_written": recorder.last.records_written,
                      "chunks": recorder.last.chunk, "records_rejected": recorder.last.records_rejected}
        replies: list[outbox.QueuedEvent] = []
        async with driver.transaction(self._sessions) as conn:
            reply = await lifecycle.complete(conn, run_id, self.worker_id, self._settings.topics,
                                     error_code=error_code, message=message,
                                     start=(0, None) if recorder is None else recorder.pending_start(),
                                     replies=replies, **counts)  # type: ignore[arg-type]
        if replies and self._sender is not None:  # before the relay is woken, so it rarely sends them again
            sent: list[int] = []
            with contextlib.suppress(TimeoutError):  # a slow broker must not hold the run's slot: the relay sends
                async with asyncio.timeout(DIRECT_REPLY_SECONDS):
                    sent = await self._sender.send_now(replies)
            with contextlib.suppress(Exception):  # unmarked, the relay sends them again: harmless
                async with driver.transaction(self._sessions) as conn:
                    await outbox.mark_published(conn, sent)
        self._notifier.notify()
        if reply is not None:
            run_ended(status_for_error(error_code.value if error_code else None), reply)

    # --- slices ---

    def submit_slice(self, run_id: uuid.UUID, number: int) -> None:
        """Run slice `number` of a split run here, beside other work, once a slot is free (no batch lock: the
        slices of one run run in parallel)."""
        sid = (run_id, number)
        if sid in self._slice_tasks:
            return
        task = asyncio.create_task(self._run_slice(run_id, number), name=f"slice-{run_id}-{number}")
        self._slice_tasks[sid] = task
        task.add_done_callback(lambda _: self._slice_tasks.pop(sid, None))

    async def _run_slice(self, run_id: uuid.UUID, number: int) -> None:
        try:
            async with self._slots:
                async with self._sessions.begin() as session:
                    claimed = await slices.claim(session, run_id, number, self.worker_id, self._settings.lease_seconds)
                    run = await session.get(Run, run_id) if claimed is not None else None
                if claimed is None or run is None:
                    return
                async with driver.transaction(self._sessions) as conn:
                    spec = await self._spec_of(conn, run)
                with observed_run(run.id, run.batch_id, run.correlation_id, run.trigger):
                    await self._slice_observed(run, number, SliceRange.from_json(claimed.range), spec)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("slice %d of run %s stopped by an unexpected error; its lease will expire and it resumes",
                          number, run_id)
        finally:
            coordinator = self._coordinators.get(run_id)
            if coordinator is not None:
                coordinator.nudge.set()
            self._scan_now.set()  # a slot is free: take a slice that waits behind another worker's busy slots

    async def _slice_observed(self, run: Run, number: int, where: SliceRange, spec: RunSpec | SyncError) -> None:
        sid = (run.id, number)
        key = slice_key(run.checkpoint_key, number)
        recorder = SliceRecorder(self._sessions, run, number, key, self.worker_id, self._settings.topics,
                                 self._notifier, self._settings.progress_interval_seconds)
        self._slice_recorders[sid] = recorder
        outcome: slices.SliceOutcome
        try:
            if isinstance(spec, SyncError):
                raise spec
            engine = asyncio.create_task(self._engine(replace(spec, slice=where, checkpoint_key=key), recorder))
            self._slice_engines[sid] = engine
            result = await engine
            outcome = slices.SliceOutcome(RunStatus.SUCCESS, result.records_read, result.records_written,
                                          result.records_rejected, result.chunks, SYNC_SUCCEEDED)
        except LeaseLost:
            log.warning("slice %d of run %s was taken over by another worker", number, run.id)
            return
        except SyncError as error:
            cancelled = isinstance(error, RunCancelled)
            last = recorder.last
            outcome = slices.SliceOutcome(
                RunStatus.CANCELLED if cancelled else RunStatus.FAILED,
                last.records_read if last else 0, last.records_written if last else 0,
                last.records_rejected if last else 0, last.chunk if last else 0, error.reason,
                ErrorCode.CANCELLED if cancelled else error.code)
        finally:
            self._slice_recorders.pop(sid, None)
            self._slice_engines.pop(sid, None)
            self._interrupting.discard(sid)
        async with self._sessions.begin() as session:
            await slices.complete(session, run, number, self.worker_id, outcome, self._settings.topics)
        self._notifier.notify()

    # --- background ---

    async def _lease_loop(self) -> None:
        interval = self._settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            owned, owned_slices = list(self._tasks), list(self._slice_tasks)
            if not owned and not owned_slices:
                continue
            try:
                async with self._sessions.begin() as session:
                    alive = await lifecycle.renew_leases(session, self.worker_id, owned,
                                                         self._settings.lease_seconds)
                    alive_slices = await slices.renew(session, self.worker_id, owned_slices,
                                                      self._settings.lease_seconds)
            except Exception:
                log.warning("lease renewal failed; retrying", exc_info=True)
                continue
            self._heard_of_slices(alive_slices)
            for run_id, recorder in list(self._recorders.items()):
                if run_id not in alive:
                    recorder.lost = True
                elif alive[run_id]:
                    recorder.cancelled_by = recorder.cancelled_by or alive[run_id]
                    self._interrupt_later(run_id, self._engines)

    def _heard_of_slices(self, alive: dict[slices.SliceId, str | None]) -> None:
        """Slices no longer ours stop; slices of a cancelled run stop at their next chunk, or are interrupted."""
        for sid, recorder in list(self._slice_recorders.items()):
            if sid not in alive:
                recorder.lost = True
            elif alive[sid]:
                recorder.cancelled_by = recorder.cancelled_by or alive[sid]
                self._interrupt_later(sid, self._slice_engines)

    def _interrupt_later(self, key: "uuid.UUID | slices.SliceId",
                         engines: "dict[Any, asyncio.Task[RunResult]]") -> None:
        """A cancelled run (or slice: `key` in `engines`) stops at its next chunk boundary; one stuck waiting on a
        system (a frozen database, a long merge) is interrupted after CANCEL_GRACE_SECONDS, so a cancel takes
        effect within seconds. Scheduled once per run or slice, however often the cancel is heard."""

        if key in self._interrupting or key in self._coordinators:
            return  # a split run's coordinator waits on no system: it cancels its slices and sees them end
        self._interrupting.add(key)

        async def interrupt() -> None:
            await asyncio.sleep(CANCEL_GRACE_SECONDS)
            engine = engines.get(key)
            if engine is not None and not engine.done():
                log.info("%s: cancel requested; interrupting its in-flight I/O", key)
                engine.cancel()

        task = asyncio.create_task(interrupt(), name=f"interrupt-{key}")
        self._background.append(task)
        task.add_done_callback(self._background.remove)

    async def _orphan_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # not wait_for: on 3.11 it can drop a cancel, and stop() hangs
                async with asyncio.timeout(self._settings.lease_seconds / 2):
                    await self._scan_now.wait()
            self._scan_now.clear()
            capacity = max(self._settings.worker_concurrency * 2 - len(self._tasks), 0)
            if capacity == 0:
                continue
            try:
                async with self._sessions.begin() as session:
                    orphans = await lifecycle.claim_orphans(session, self.worker_id,
                                                            self._settings.lease_seconds, capacity)
            except Exception:
                log.warning("orphan scan failed; retrying", exc_info=True)
                continue
            for run in orphans:
                log.info("resuming run %s of batch %s (previous owner's lease expired)", run.id, run.batch_id)
                self.submit(run.id, run.batch_id)
            await self._orphan_slices()

    async def _orphan_slices(self) -> None:
        """Take slices whose worker died, or which wait for a slot elsewhere, up to this worker's free slots."""
        busy = len(self._slice_tasks) + len(self._engines.keys() - self._coordinators.keys())  # a coordinator: no slot
        capacity = self._settings.worker_concurrency - busy
        if capacity <= 0:
            return
        try:
            async with self._sessions.begin() as session:
                orphans = await slices.claim_orphans(session, self.worker_id, self._settings.lease_seconds,
                                                     capacity)
        except Exception:
            log.warning("orphan slice scan failed; retrying", exc_info=True)
            return
        for run_id, number, batch_id in orphans:
            log.info("resuming slice %d of run %s of batch %s (its lease expired)", number, run_id, batch_id)
            self.submit_slice(run_id, number)

"""The sync engine: runs (or resumes) one run, extract → transform → load per chunk.

The engine owns checkpoints and retries, connectors own their systems. Each attempt reads the
checkpoint the target keeps beside its rows, so a retry after a transient error (or a new run in
the same retry chain) continues after the last durable chunk and never reads it again. Reading the
next chunk overlaps writing the current one through a one-chunk prefetch.

The engine knows no system: it is handed a `Connectors` factory (the composition root passes the
registry's) and talks to what it builds through `service.connectors.base` alone.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from schemas.api import WriteMode
from schemas.events import RunPhase
from schemas.messages import column_incompatible, no_auto_create, split_unsupported, unmappable_columns
from service.connectors.base import (
    Checkpoint,
    Chunk,
    Column,
    Connectors,
    RejectedRow,
    SchemalessTarget,
    SelectItem,
    SliceableSource,
    SliceStagingTarget,
    Source,
    StreamTarget,
    TableCreator,
    Target,
    TargetTypes,
    Tolerant,
    TypeMap,
)
from service.observability.runs import observe_chunk
from service.sync.errors import (
    CheckpointTaken,
    ConfigInvalid,
    ConnectRefused,
    ConnectTimeout,
    RunCancelled,
    Side,
    TableMissing,
    TransientSourceError,
    TransientTargetError,
    is_transient,
)
from service.sync.model import ProgressUpdate, RejectObserver, RunObserver, RunResult, RunSpec
from service.sync.reconcile import TARGET_BEFORE, Reconciliation, agrees, count
from service.sync.rejects import Tally, rejected_total, rows_of_last_chunk
from service.sync.retry import RetryPolicy, retry_transient
from service.sync.transforms import check_target, plan_columns
from service.sync.types import compatible, kind_of_value

if TYPE_CHECKING:
    from service.slicing.ranges import SliceRange

log = logging.getLogger(__name__)

T = TypeVar("T")
PUBLISH_ROWS_PER_SECOND = 20_000
"""The slowest an overwrite's final copy (its swap, or a split run's publish) may go and still count as working:
its bound is the I/O timeout plus its rows at this rate (this machine copies 380-440k rows/s, docs/scale.md), so
a 50M-row table is not cut off at 120 s, and a frozen target is still an outage, only found later."""
ABANDON_SECONDS = 5.0
"""How long a cancelled run may spend dropping what it staged (the system may be the one that hung)."""

_EMPTY = Checkpoint(chunk=0, position={}, records_read=0, records_written=0)


def planned_columns(plan: list[SelectItem], source_columns: list[Column]) -> list[Column]:
    """The target columns the plan produces: the source's type (for a decimal's scale) and the kind after
    the mapping's cast; a constant's kind follows its JSON value."""
    by_name = {c.name: c for c in source_columns}
    out = []
    for item in plan:
        origin = by_name.get(item.source or "")
        if item.cast is not None:
            kind: str | None = item.cast
        elif item.is_constant:
            kind = kind_of_value(item.constant)
        else:
            kind = origin.kind if origin else None
        out.append(Column(item.target, origin.sql_type if origin and item.cast is None else "", kind))
    return out


def check_compatible(wanted: list[Column], target_columns: list[Column], table: str) -> None:
    """Refuse a run whose values cannot fit an existing target column (e.g. text into integer)."""
    existing = {c.name: c for c in target_columns}
    for column in wanted:
        have = existing.get(column.name)
        if have is not None and not compatible(column.kind, have.kind):
            raise ConfigInvalid(column_incompatible(table, column.name, column.kind, have.sql_type))


def source_side_types(
    source: TypeMap | None, target: TypeMap | None, wanted: list[Column], target_columns: list[Column]
) -> TargetTypes:
    """The target's types as the source should produce them. A source with a type map casts in SQL, so
    it gets them spelled in its own dialect (the target's own spelling when both are one system); any
    other source gets the target's spelling and the target's map to read it."""
    own = {c.name: c.sql_type for c in target_columns}
    if source is None or source == target:
        return TargetTypes(own, target)
    planned = {c.name: c for c in wanted}
    out = {}
    for column in target_columns:
        kind = column.kind or (planned[column.name].kind if column.name in planned else None)
        out[column.name] = source.spell(kind) if kind else own[column.name]
    return TargetTypes(out, source)


async def execute(
    spec: RunSpec, observer: RunObserver, *, connectors: Connectors, connect_timeout: float,
    io_timeout: float = 120.0, policy: RetryPolicy | None = None,
) -> RunResult:
    """Run `spec` to the end with the sources and targets `connectors` builds; terminal SyncErrors
    surface, transient ones are retried in place first (from the last checkpoint).

    Once the run has connected, a refused or timed-out connection is an outage (a database restarting),
    not a misconfiguration, so it is retried too; before that it fails the run within the connect timeout.
    Cancelled while waiting on a system (a cancel must not wait for a hung database), the run abandons what
    it staged on a fresh connection and ends as RunCancelled.
    """
    run = _Run(spec, observer, connectors, connect_timeout, io_timeout)
    try:
        return await retry_transient(run.attempt, policy or RetryPolicy(), transient=run.transient,
                                     progress=run.progress)
    except asyncio.CancelledError:
        if not observer.cancel_requested():
            raise
        await run.abandon()
        raise RunCancelled() from None


@dataclass
class _Failed:
    error: BaseException


@contextlib.asynccontextmanager
async def _prefetched(chunks: AsyncIterator[Chunk], io_timeout: float) -> AsyncIterator[AsyncIterator[Chunk]]:
    """Pull the next chunk in a background task while the caller writes the current one; a source that
    sends nothing for `io_timeout` seconds is a transient fault."""
    queue: asyncio.Queue[Chunk | _Failed | None] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        try:
            async with contextlib.aclosing(chunks):  # type: ignore[type-var]
                async for chunk in chunks:
                    await queue.put(chunk)
        except Exception as exc:
            await queue.put(_Failed(exc))
            return
        await queue.put(None)

    async def items() -> AsyncIterator[Chunk]:
        while True:
            try:
                async with asyncio.timeout(io_timeout):
                    item = await queue.get()
            except TimeoutError as exc:
                raise TransientSourceError(detail=f"no chunk in {io_timeout:g} s") from exc
            if item is None:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    task = asyncio.create_task(pump())
    try:
        yield items()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # a hung source is terminated on close
            async with asyncio.timeout(min(io_timeout, 5.0)):
                await task


def _tolerate(*sides: Source | Target) -> None:
    """Ask the sides that can set bad rows aside (`Tolerant`) to do so; the others still fail on one."""
    for side in sides:
        if isinstance(side, Tolerant):
            side.tolerate_bad_rows()


def _abandon(task: "asyncio.Future[Any]") -> None:
    task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())


class _Run:
    """State that survives retries of one run: whether on_start was told, and from which chunk."""

    def __init__(self, spec: RunSpec, observer: RunObserver, connectors: Connectors, connect_timeout: float,
                 io_timeout: float) -> None:
        self.spec, self.observer, self.connect_timeout = spec, observer, connect_timeout
        self.io_timeout = io_timeout
        self.connectors = connectors
        self.started = False
        self.resumed_from = 0
        self.estimate: int | None = None
        self.chunks_done = 0
        self.tally = Tally(spec.error_limit)

    def transient(self, error: BaseException) -> bool:
        return is_transient(error) or (self.started and isinstance(error, ConnectRefused | ConnectTimeout))

    def progress(self) -> int:
        return self.chunks_done

    def publish_bound(self, rows: int) -> float:
        """How long publishing `rows` rows may take (PUBLISH_ROWS_PER_SECOND)."""
        return self.io_timeout + rows / PUBLISH_ROWS_PER_SECOND

    async def _io(self, side: Side, operation: Awaitable[T], bound: float | None = None) -> T:
        """One source or target operation, bounded by the I/O timeout (or `bound`, for one that grows with the
        rows): a system that stops answering (a frozen server, a half-open socket) is an outage the run rides
        out, not a hang."""
        bound = self.io_timeout if bound is None else bound
        task = asyncio.ensure_future(operation)
        try:
            done, _ = await asyncio.wait({task}, timeout=bound)
        except asyncio.CancelledError:
            _abandon(task)
            raise
        if not done:
            # Not awaited: a driver that cleans up on cancel (a ROLLBACK) would wait on the hung system too.
            # The connection is terminated when the attempt leaves its `async with`, which ends the task.
            _abandon(task)
            error = TransientSourceError if side == "source" else TransientTargetError
            raise error(detail=f"no answer in {bound:g} s")
        return task.result()

    async def attempt(self, number: int) -> RunResult:
        spec = self.spec
        source = self.connectors.source_for(spec.source_endpoint, spec.source, self.connect_timeout)
        target = self.connectors.target_for(spec.target_endpoint, spec.target, self.connect_timeout)
        if spec.slice is not None:
            if not isinstance(source, SliceableSource):
                raise ConfigInvalid(split_unsupported(spec.source_endpoint.type, "source"))
            source.restrict(spec.slice)
        async with source, target:
            return await self._sync(source, target, number)

    async def abandon(self) -> None:
        """Best effort, after a cancel interrupted the run: drop what it staged, on a fresh connection."""
        spec = self.spec
        try:
            async with asyncio.timeout(self.connect_timeout + ABANDON_SECONDS):
                async with self.connectors.target_for(spec.target_endpoint, spec.target,
                                                      self.connect_timeout) as target:
                    await target.abandon(str(spec.checkpoint_key))
        except Exception as exc:
            log.warning("run %s: what it staged could not be dropped after the cancel: %s", spec.run_id, exc)

    async def _prepare_columns(self, source: Source, target: Target) -> tuple[list[SelectItem], TargetTypes]:
        """The mapping plan and the target's types as the source should produce them. Creates a missing
        target table when the batch opts in (`target.create`), and refuses incompatible columns before
        anything is written."""
        spec = self.spec
        try:
            target_columns: list[Column] | None = await self._io("target", target.describe())
        except TableMissing as missing:
            if not spec.target.create or missing.side != "target":
                raise
            target_columns = None
        source_columns = await self._io("source", source.describe())
        plan = plan_columns([c.name for c in source_columns], spec.mapping)
        wanted = planned_columns(plan, source_columns)
        if target_columns is None:
            if not isinstance(target, TableCreator):
                raise ConfigInvalid(no_auto_create(spec.target_endpoint.type))
            unknown = [c.name for c in wanted if c.kind is None]
            if unknown:
                raise ConfigInvalid(unmappable_columns(unknown))
            log.info("run %s creates target table %s", spec.run_id, spec.target.table)
            await self._io("target", target.create_table(wanted))
            target_columns = await self._io("target", target.describe())
        if isinstance(target, SchemalessTarget):
            target_columns = await self._io("target", target.accept_columns(wanted))
        check_target(plan, {c.name: c.sql_type for c in target_columns}, spec.target.table)
        check_compatible(wanted, target_columns, spec.target.table)
        return plan, source_side_types(source.capabilities.types, target.capabilities.types, wanted, target_columns)

    async def _already_finished(self, source: Source, target: Target, checkpoint: Checkpoint) -> RunResult:
        """The target published this chain's rows before the outcome was recorded: report, write nothing."""
        log.warning("run %s: the target already holds its finished rows; nothing is written again",
                    self.spec.run_id)
        if not self.started:
            self.resumed_from = checkpoint.chunk
            await self.observer.on_start(checkpoint.chunk, None)
            self.started = True
        await self._tell_rejected(checkpoint.chunk, rows_of_last_chunk(checkpoint))
        return self._result(source, checkpoint, await self._reconcile(source, target, checkpoint))

    def _result(self, source: Source, checkpoint: Checkpoint, reconciled: Reconciliation | None) -> RunResult:
        return RunResult(
            records_read=checkpoint.records_read, records_written=checkpoint.records_written,
            chunks=checkpoint.chunk, resumed_from_chunk=self.resumed_from,
            high_water_mark=source.high_water_mark(checkpoint.position, self.spec.high_water_mark),
            records_rejected=rejected_total(checkpoint),
            source_count=reconciled.source_count if reconciled else None,
            target_count=reconciled.target_count if reconciled else None,
            reconciled=reconciled.reconciled if reconciled else None,
        )

    @property
    def _full(self) -> bool:
        """A run that reads the whole source (no cursor column, not a slice): the one kind that is reconciled
        (a split run is reconciled as a whole once its slices are published: `publish_slices`)."""
        return self.spec.source.cursor_column is None and self.spec.slice is None

    @property
    def _staged_slice(self) -> bool:
        """An overwrite slice: it stages its rows, and the run publishes every slice's at once."""
        return self.spec.slice is not None and self.spec.target.mode is WriteMode.OVERWRITE

    async def _counted_before(self, target: Target) -> dict[str, int]:
        """An append run's target count before its first chunk, kept in the checkpoint across resumes."""
        if not self._full or self.spec.target.mode is not WriteMode.APPEND:
            return {}
        before = await count(target, "target", self.io_timeout)
        return {} if before is None else {TARGET_BEFORE: before}

    async def _reconcile(self, source: Source, target: Target, last: Checkpoint) -> Reconciliation | None:
        """Count both sides after a full run; a side without a cheap count stands for the rows it read or
        wrote (a query, a file)."""
        if not self._full:
            return None
        source_count, target_count = await asyncio.gather(  # each side on its own connection: one wait
            count(source, "source", self.io_timeout), count(target, "target", self.io_timeout))
        source_count = last.records_read if source_count is None else source_count
        target_count = last.records_written if target_count is None else target_count
        before = last.extra.get(TARGET_BEFORE)
        ok = agrees(self.spec.target.mode, source=source_count, target=target_count,
                    before=None if before is None else int(before), written=last.records_written,
                    rejected=rejected_total(last))
        if not ok:
            log.warning("run %s does not reconcile: source %d rows, target %d rows", self.spec.run_id,
                        source_count, target_count)
        return Reconciliation(source_count, target_count, ok)

    async def _tell_rejected(self, chunk: int, rows: list[RejectedRow]) -> None:
        """Hand a chunk's rejected rows to the observer (after the chunk is durable, before its progress)."""
        if rows and isinstance(self.observer, RejectObserver):
            await self.observer.on_rejected(chunk, rows)
        elif rows:
            log.warning("run %s rejected %d rows of chunk %d: %s", self.spec.run_id, len(rows), chunk, rows[0].reason)

    async def _sync(self, source: Source, target: Target, attempt: int) -> RunResult:
        spec, key = self.spec, str(self.spec.checkpoint_key)
        if spec.error_limit is not None:  # without one, a bad row fails the run where it is found
            _tolerate(source, target)
        plan, target_types = await self._prepare_columns(source, target)
        columns = [item.target for item in plan]

        checkpoint = await self._io("target", target.read_checkpoint(key))
        if checkpoint is not None and (checkpoint.finished or checkpoint.extra.get("staged")):
            return await self._already_finished(source, target, checkpoint)
        if checkpoint is None:
            checkpoint = replace(_EMPTY, position=await self._io("source", source.start(spec.high_water_mark)),
                                 extra=await self._counted_before(target))
        if not self.started:
            self.resumed_from = checkpoint.chunk
            self.estimate = await self._io("source", source.estimate(checkpoint.position))
            await self.observer.on_start(self.resumed_from, self.estimate)
            self.started = True
        elif attempt:
            log.info("run %s attempt %d resumes after chunk %d", spec.run_id, attempt + 1, checkpoint.chunk)
        await self._tell_rejected(checkpoint.chunk, rows_of_last_chunk(checkpoint))
        await self._io("target", target.prepare(key, columns))

        fmt = source.capabilities.copy_format
        raw = fmt is not None and (
            fmt == target.capabilities.copy_format or (isinstance(target, StreamTarget) and target.accept_stream(fmt))
        )
        stream = source.chunks(plan, target_types, checkpoint.position, size=spec.chunk_size, raw=raw)
        async with _prefetched(stream, self.io_timeout) as chunks:
            async for chunk in chunks:
                if self.observer.cancel_requested():
                    break
                chunk.number = checkpoint.chunk + 1
                observed = observe_chunk(chunk.number, checkpoint.records_written)
                written = await self._io("target", target.write(key, chunk, checkpoint))
                if written is None:
                    raise CheckpointTaken(detail=f"chunk {chunk.number}")
                checkpoint = written
                observed.done(checkpoint.records_written)
                self.chunks_done += 1
                self.tally.add(chunk.rejected)
                await self._tell_rejected(chunk.number, chunk.rejected)
                await self.observer.on_chunk(
                    ProgressUpdate(
                        chunk=checkpoint.chunk,
                        records_read=checkpoint.records_read,
                        records_written=checkpoint.records_written,
                        total_estimate=self.estimate,
                        checkpoint=checkpoint.position,
                        records_rejected=rejected_total(checkpoint),
                    )
                )
                self.tally.check_records(rejected_total(checkpoint))
        if self.observer.cancel_requested():
            await self._io("target", target.abandon(key))
            raise RunCancelled()
        self.tally.check_ratio(rejected_total(checkpoint), checkpoint.records_read)
        try:  # the observer may learn only now of a cancel accepted before this point (RunRecorder's handshake)
            await self.observer.on_phase(ProgressUpdate(
                chunk=checkpoint.chunk, records_read=checkpoint.records_read,
                records_written=checkpoint.records_written, total_estimate=self.estimate,
                checkpoint=checkpoint.position, phase=RunPhase.PUBLISHING, records_rejected=rejected_total(checkpoint),
            ))
        except RunCancelled:
            await self._io("target", target.abandon(key))
            raise
        await self._finish(target, key, columns, checkpoint)
        return self._result(source, checkpoint, await self._reconcile(source, target, checkpoint))

    async def _finish(self, target: Target, key: str, columns: list[str], checkpoint: Checkpoint) -> None:
        """Publish the run's rows, or, for an overwrite slice, only mark them staged (the run publishes)."""
        if not self._staged_slice:
            await self._io("target", target.finish(key, columns, checkpoint),
                           self.publish_bound(checkpoint.records_written))
            return
        if not isinstance(target, SliceStagingTarget):
            raise ConfigInvalid(split_unsupported(self.spec.target_endpoint.type, "target"))
        await self._io("target", target.stage_finished(key, columns, checkpoint))


class _Unobserved:
    """The observer of a split run's planning and publishing, which report through the run's coordinator."""

    async def on_start(self, *_: object) -> None:
        return None

    async def on_chunk(self, *_: object) -> None:
        return None

    async def on_phase(self, *_: object) -> None:
        return None

    def cancel_requested(self) -> bool:
        return False


@dataclass(frozen=True)
class SplitPlan:
    ranges: list["SliceRange"]
    total_estimate: int | None


async def plan_split(
    spec: RunSpec, planner: Callable[[SliceableSource], Awaitable[list["SliceRange"]]], *, connectors: Connectors,
    connect_timeout: float, io_timeout: float = 120.0, policy: RetryPolicy | None = None,
) -> SplitPlan:
    """Plan a split run into slices with `planner` (service/slicing/planner.py) before any slice starts, after
    checking the mapping against the target and creating a missing target table once (slices running at once
    would race to create it). Transient errors are retried as in `execute`."""
    run = _Run(replace(spec, slice=None), _Unobserved(), connectors, connect_timeout, io_timeout)

    async def attempt(_: int) -> SplitPlan:
        source = connectors.source_for(spec.source_endpoint, spec.source, connect_timeout)
        target = connectors.target_for(spec.target_endpoint, spec.target, connect_timeout)
        if not isinstance(source, SliceableSource):
            raise ConfigInvalid(split_unsupported(spec.source_endpoint.type, "source"))
        async with source, target:
            await run._prepare_columns(source, target)
            position = await run._io("source", source.start(spec.high_water_mark))
            estimate = await run._io("source", source.estimate(position))
            ranges = await run._io("source", planner(source))
            return SplitPlan(ranges, estimate)

    return await retry_transient(attempt, policy or RetryPolicy(), transient=is_transient)


async def publish_slices(
    spec: RunSpec, keys: list[str], *, read: int, written: int, rejected: int, connectors: Connectors,
    connect_timeout: float, io_timeout: float = 120.0, policy: RetryPolicy | None = None,
) -> Reconciliation | None:
    """Every slice of a split run succeeded: publish an overwrite's stages at once (`publish_stages`, one
    transaction: readers never see a half-written table), then reconcile the run as a whole."""
    run = _Run(replace(spec, slice=None), _Unobserved(), connectors, connect_timeout, io_timeout)
    last = Checkpoint(chunk=0, position={}, records_read=read, records_written=written,
                      extra={"rejected": rejected} if rejected else {})

    async def attempt(_: int) -> Reconciliation | None:
        source = connectors.source_for(spec.source_endpoint, spec.source, connect_timeout)
        target = connectors.target_for(spec.target_endpoint, spec.target, connect_timeout)
        async with source, target:
            if spec.target.mode is WriteMode.OVERWRITE:
                if not isinstance(target, SliceStagingTarget):
                    raise ConfigInvalid(split_unsupported(spec.target_endpoint.type, "target"))
                plan, _types = await run._prepare_columns(source, target)
                await run._io("target", target.publish_stages(keys, [item.target for item in plan]),
                              run.publish_bound(written))
            return await run._reconcile(source, target, last)

    return await retry_transient(attempt, policy or RetryPolicy(), transient=is_transient)

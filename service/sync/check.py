"""A batch's dry run (`POST /integration/batch/{id}/check`, docs/spec.md §3): everything a run checks
before its first write, and a preview of the first rows after the mapping, without writing anything.

Both connections are opened the way a run opens them (the same connectors, so the same AccessPolicy,
file roots and egress rules), but only ever to read: the source as the run's source (in its read-only
transaction, never committed, offsets never committed), and the target *through its kind's source*, which
reads the target table's columns without the checkpoint table, staging or topic a run's target sets up.
Instead of stopping at the first error like a run, every problem is collected with the body field to
fix, so one call lists them all.
"""

import asyncio
import base64
import contextlib
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any

from schemas.api import MappingEntry, SourceSpec, TargetSpec
from schemas.messages import (
    CHECK_TARGET_UNREADABLE,
    CHECK_TIMED_OUT,
    cursor_column_missing,
    mode_unsupported,
    no_auto_create,
    source_column_missing,
    split_unsupported,
    target_columns_missing,
    target_created_by_run,
    target_table_missing,
    unmappable_columns,
)
from service.connectors.base import (
    Column,
    Connectors,
    SchemalessTarget,
    SelectItem,
    SliceableSource,
    Source,
    TableCreator,
    Target,
)
from service.slicing.ranges import SliceRange
from service.sync.engine import check_compatible, planned_columns, source_side_types
from service.sync.errors import AccessDenied, ConfigInvalid, ConnectError, SyncError, TableMissing
from service.sync.model import Endpoint
from service.sync.transforms import plan_columns

Planner = Callable[[SliceableSource], Awaitable[list[SliceRange]]]
"""How a split batch's run would plan its slices (service/slicing/planner.py, bound to the batch's split)."""

PREVIEW_ROWS = 5


@dataclass(frozen=True)
class Problem:
    field: str
    """The batch body field to fix: `sourceConnectionId`, `source.table`, `mapping[2].from`, `target.mode`…"""
    message: str


@dataclass(frozen=True)
class PlannedColumn:
    name: str
    source: str | None
    kind: str | None
    target_type: str | None


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    """What the run will do that is not a problem (create the target table)."""
    columns: list[PlannedColumn] = field(default_factory=list)
    preview: list[dict[str, Any]] = field(default_factory=list)
    slices: list[SliceRange] | None = None
    """A split batch: the slices a run started now would be planned into."""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class CheckSpec:
    """A batch's configuration with its two connections opened (secrets included; never reported)."""

    source_endpoint: Endpoint
    source: SourceSpec
    target_endpoint: Endpoint
    target: TargetSpec
    mapping: list[MappingEntry] | None
    high_water_mark: Any | None = None
    planner: Planner | None = None
    """A split batch's planner: the dry run shows the plan a run started now would get."""


def phase_seconds(connect_timeout: float) -> float:
    """How long one phase (source, target, preview) may take: connecting, plus a few round trips."""
    return 3 * connect_timeout + 5


async def check(spec: CheckSpec, connectors: Connectors, connect_timeout: float, *,
                rows: int = PREVIEW_ROWS) -> CheckReport:
    """The dry run of `spec`: connect to both sides, describe source and target, plan the mapping, check
    every column fits, and read the first `rows` rows after the mapping. Never raises a SyncError: each
    becomes a Problem."""
    return await _DryRun(spec, connectors, connect_timeout).run(rows)


class _DryRun:
    def __init__(self, spec: CheckSpec, connectors: Connectors, connect_timeout: float) -> None:
        self.spec, self.connectors, self.timeout = spec, connectors, connect_timeout
        self.report = CheckReport()

    def problem(self, where: str, message: str) -> None:
        self.report.problems.append(Problem(where, message))

    def phase(self, where: str) -> "_Phase":
        return _Phase(self, where)

    def field_of(self, error: SyncError, side: str) -> str:
        """The body field a run's error is about."""
        source = self.spec.source
        if isinstance(error, ConnectError | AccessDenied):
            return f"{side}ConnectionId"
        if isinstance(error, TableMissing):
            return "source.query" if side == "source" and source.query is not None else f"{side}.table"
        if side == "source" and source.cursor_column and error.reason == cursor_column_missing(source.cursor_column):
            return "source.cursorColumn"
        if side == "target" and error.reason == mode_unsupported(self.spec.target_endpoint.type,
                                                                   self.spec.target.mode.value):
            return "target.mode"
        return side

    async def run(self, rows: int) -> CheckReport:
        spec = self.spec
        async with contextlib.AsyncExitStack() as stack:
            source: Source | None = None
            source_columns: list[Column] | None = None
            async with self.phase("source"):
                opened = self.connectors.source_for(spec.source_endpoint, spec.source, self.timeout)
                source = await stack.enter_async_context(opened)
                source_columns = await source.describe()
            target, target_columns, ready = await self.target()
            if source is None or source_columns is None:
                return self.report
            plan = self.plan(source_columns)
            if plan is None or target is None or not ready:
                return self.report
            wanted = planned_columns(plan, source_columns)
            have = await self.fit(target, wanted, target_columns)
            self.report.columns = [
                PlannedColumn(item.target, item.source, column.kind, have.get(item.target))
                for item, column in zip(plan, wanted, strict=True)]
            if self.report.ok:
                await self.preview(source, target, plan, wanted, target_columns, rows)
            if self.report.ok and spec.planner is not None:
                await self.slices(source, spec.planner)
        return self.report

    async def slices(self, source: Source, planner: Planner) -> None:
        """The plan of a split batch, counted on the source as a run started now would count it."""
        async with self.phase("split.column"):
            if not isinstance(source, SliceableSource):
                raise ConfigInvalid(split_unsupported(self.spec.source_endpoint.type, "source"))
            self.report.slices = await planner(source)

    async def target(self) -> tuple[Target | None, list[Column] | None, bool]:
        """The (unopened) target, its table's columns read without writing (None: the table is missing), and
        whether the columns can be checked: the table exists, or the run would create it."""
        spec = self.spec
        target: Target | None = None
        columns: list[Column] | None = None
        described = missing = False
        async with self.phase("target"):
            target = self.connectors.target_for(spec.target_endpoint, spec.target, self.timeout)
            try:
                reader = self.connectors.source_for(spec.target_endpoint, SourceSpec(table=spec.target.table),
                                                    self.timeout)
            except ConfigInvalid:
                self.report.notes.append(Problem("target.table", CHECK_TARGET_UNREADABLE))
                return target, None, False
            async with reader:
                try:
                    columns = await reader.describe()
                except TableMissing:
                    missing = True
                except ConfigInvalid:
                    if not isinstance(target, SchemalessTarget):
                        raise
                    columns = []  # it exists; a schemaless target has no columns of its own to read
            described = True
        if target is None or not described:
            return target, None, False
        return target, columns, not missing or self.creates(target)

    def creates(self, target: Target) -> bool:
        """Whether the run creates the missing target table; a problem when it would not or cannot."""
        spec = self.spec
        if not spec.target.create:
            self.problem("target.table", target_table_missing(spec.target.table))
            return False
        if not isinstance(target, TableCreator):
            self.problem("target.create", no_auto_create(spec.target_endpoint.type))
            return False
        self.report.notes.append(Problem("target.table", target_created_by_run(spec.target.table)))
        return True

    def plan(self, source_columns: list[Column]) -> list[SelectItem] | None:
        """The run's column plan, or None after recording each mapping entry that does not fit."""
        names = [c.name for c in source_columns]
        for index, entry in enumerate(self.spec.mapping or []):
            if entry.from_ is not None and entry.from_ not in names:
                self.problem(f"mapping[{index}].from", source_column_missing(entry.from_))
        if not self.report.ok:
            return None
        try:
            return plan_columns(names, self.spec.mapping)
        except ConfigInvalid as error:
            self.problem("mapping", error.reason)
            return None

    async def fit(self, target: Target, wanted: list[Column], columns: list[Column] | None) -> dict[str, str]:
        """Check the planned columns against the target's (or, for a table the run creates, that each has a
        kind to create it with); the target type of each column that has one."""
        table = self.spec.target.table
        if columns is None:
            unknown = [c.name for c in wanted if c.kind is None]
            if unknown and self.spec.target.create:
                self.problem("mapping", unmappable_columns(unknown))
            return {}
        if isinstance(target, SchemalessTarget):
            columns = await target.accept_columns(wanted)
        have = {c.name: c.sql_type for c in columns}
        absent = [c.name for c in wanted if c.name not in have]
        if absent:
            self.problem("mapping", target_columns_missing(table, absent))
        for column in wanted:
            try:
                check_compatible([column], columns, table)
            except ConfigInvalid as error:
                self.problem("mapping", error.reason)
        return have

    async def preview(self, source: Source, target: Target, plan: list[SelectItem], wanted: list[Column],
                      target_columns: list[Column] | None, rows: int) -> None:
        """The first `rows` rows the run would write, as the source produces them for the target's types."""
        if target_columns is None:
            types = target.capabilities.types
            target_columns = [Column(c.name, types.spell(c.kind, c.sql_type) if types and c.kind else "", c.kind)
                              for c in wanted]
        elif isinstance(target, SchemalessTarget):
            target_columns = await target.accept_columns(wanted)
        target_types = source_side_types(source.capabilities.types, target.capabilities.types, wanted,
                                         target_columns)
        names = [item.target for item in plan]
        async with self.phase("preview"):
            position = await source.start(self.spec.high_water_mark)
            chunks = source.chunks(plan, target_types, position, size=rows, raw=False)
            async with contextlib.aclosing(chunks):  # type: ignore[type-var]
                async for chunk in chunks:
                    for row in (chunk.rows or [])[:rows - len(self.report.preview)]:
                        self.report.preview.append({n: json_value(v) for n, v in zip(names, row, strict=True)})
                    if len(self.report.preview) >= rows:
                        break


class _Phase:
    """One step of the dry run, bounded in time: a SyncError or an overrun inside becomes a problem of
    `where` (or of the field the error names), and the dry run goes on with what it learned."""

    def __init__(self, run: _DryRun, where: str) -> None:
        self.run, self.where = run, where
        self.deadline = asyncio.timeout(phase_seconds(run.timeout))

    async def __aenter__(self) -> None:
        await self.deadline.__aenter__()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> bool:
        try:
            await self.deadline.__aexit__(kind, error, trace)
        except TimeoutError:
            self.run.problem(self.where, CHECK_TIMED_OUT)
            return True
        if isinstance(error, SyncError):
            self.run.problem(self.run.field_of(error, self.where), error.reason)
            return True
        return False


def json_value(value: Any) -> Any:
    """A previewed value as JSON: decimals as text (no precision lost), times in ISO 8601, bytes in base64."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return str(value)

"""The connector protocol: a source yields chunks that carry their resume position, a target writes a
chunk together with its checkpoint. Capabilities are data, so the engine picks a path without knowing
which system it talks to (Kafka Connect's poll/put split; dlt's destination capabilities).

This module is all the engine knows of connectors: the protocols (`Source`, `Target`, the optional
`TableCreator`, `SchemalessTarget`, `StreamTarget`), the data they exchange, each side's type map, and
`Connectors`, the factory the composition root hands the engine (`service.connectors.registry`).
"""

import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from schemas.api import SourceSpec, TargetSpec
    from service.slicing.ranges import SliceRange
    from service.sync.model import Endpoint

Position = dict[str, Any]
"""A source's resume position: JSON-serialisable, opaque to the engine."""

KINDS = ("int", "float", "decimal", "string", "bool", "date", "datetime", "json", "binary")
"""Canonical column kinds: the common language of the type mapping table (docs/types.md)."""

FORMS = (*KINDS, "timestamp", "time", "uuid")
"""Value forms: the Python value a target's driver takes for a column. A kind's canonical value
(docs/types.md), or a refinement of one: `timestamp` is a naive datetime holding UTC wall-clock time,
`time` a `datetime.time`, `uuid` a `uuid.UUID`. Sources that convert values themselves (files) produce
them."""

_MODIFIERS = re.compile(r"\(.*?\)")
_DECIMAL_SHAPE = re.compile(r"\((\d+)\s*,\s*(\d+)\)")


def base_type(sql_type: str) -> str:
    """`numeric(14,2)` → `numeric`, `character varying(20)` → `character varying`; arrays stay marked."""
    return _MODIFIERS.sub("", sql_type).strip().lower()


@dataclass(frozen=True)
class TypeMap:
    """How one system spells column types, declared as data by its connector (`<kind>/types.py`; dlt's
    type mapper capability): the engine spells a target's types in a SQL source's dialect with it, and a
    source that converts values itself reads the target's spellings with the target's map."""

    native: Mapping[str, str]
    """The column type a created column of each kind gets."""
    kinds: Callable[[str], str | None]
    """A type as the system spells it → its canonical kind (None: no kind, values pass unchanged)."""
    forms: Mapping[str, str] = field(default_factory=dict)
    """A base type (`base_type`) → the value form (`FORMS`) the system's driver takes for it."""

    def kind_of(self, native: str) -> str | None:
        return self.kinds(native)

    def form_of(self, native: str) -> str | None:
        return self.forms.get(base_type(native))

    def spell(self, kind: str, like: str | None = None) -> str:
        """The column type for `kind`; a decimal keeps the (precision, scale) of `like`."""
        spelled = self.native[kind]
        if kind == "decimal" and like and (shape := _DECIMAL_SHAPE.search(like)):
            return f"{spelled.split('(')[0]}({shape.group(1)},{shape.group(2)})"
        return spelled


@dataclass(frozen=True)
class Capabilities:
    transactional_checkpoint: bool = False
    """Rows and checkpoint commit together, so a replayed chunk never duplicates rows."""
    copy_format: str | None = None
    """Raw-bytes fast path; a source and a target that name the same format can stream undecoded."""
    cursor: bool = False
    """Incremental reads beyond a high-water mark on a cursor column."""
    types: TypeMap | None = None
    """How this side spells column types. A source with a map casts in SQL, so it is handed the target's
    types in its own dialect; every target has one, which reads its spellings for the other sources."""


@dataclass(frozen=True)
class TargetTypes:
    """The target's column types as a source should produce them: `spelled` in the source's own dialect
    when the source has a type map (it casts in SQL), else as the target spells them; `types` is the map
    that reads `spelled` (None: nothing is known of them, values pass unchanged)."""

    spelled: dict[str, str]
    types: TypeMap | None = None

    def kind(self, column: str) -> str | None:
        """The canonical kind of a target column (None: unknown)."""
        native = self.spelled.get(column)
        return self.types.kind_of(native) if self.types is not None and native is not None else None

    def form(self, column: str) -> str | None:
        """The value form (`FORMS`) a target column takes (None: its values pass as they are)."""
        native = self.spelled.get(column)
        return self.types.form_of(native) if self.types is not None and native is not None else None


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    """The type as the system spells it (PostgreSQL: `format_type`), used for casts."""
    kind: str | None = None
    """The canonical kind (one of KINDS), when known: how a target that creates tables maps it."""


@dataclass(frozen=True)
class RejectedRow:
    """A row set aside under the batch's `errorLimit`: its values (column → JSON value) and why."""

    row: dict[str, Any]
    reason: str
    at_source: bool = False
    """The source could not convert it (it never reached the target, so it is not in the target's count)."""


@dataclass
class Chunk:
    """One unit of work: either decoded `rows` or a raw `stream` in the shared copy format."""

    number: int
    position: Position
    columns: list[str]
    rows: list[tuple[Any, ...]] | None = None
    stream: AsyncIterator[bytes] | None = None
    rejected: list[RejectedRow] = field(default_factory=list)
    """Rows of this chunk set aside, by a tolerant source (at_source) or a tolerant target's `write`."""

    async def drain(self) -> None:
        """Consume an unused stream so the source can move on."""
        if self.stream is not None:
            async for _ in self.stream:
                pass


@dataclass(frozen=True)
class Checkpoint:
    """The last chunk durably written, as stored beside the rows in the target."""

    chunk: int
    position: Position
    records_read: int
    records_written: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """The run's rows are published: a run of this chain executed again must write nothing."""
        return bool(self.extra.get("finished"))

    def as_finished(self) -> "Checkpoint":
        return Checkpoint(chunk=self.chunk, position=self.position, records_read=self.records_read,
                          records_written=self.records_written, extra={**self.extra, "finished": True})

    def after(self, chunk: Chunk, read: int, written: int) -> "Checkpoint":
        """The checkpoint saved with `chunk`: its number and position, this one's counts plus its own. Rows
        the chunk rejected are counted (`rejected`) and kept until the next chunk (`rejectedRows`), so that
        they are told exactly once with it (service/sync/rejects.py)."""
        extra = {k: v for k, v in self.extra.items() if k != "rejectedRows"}
        if chunk.rejected:
            read += sum(1 for r in chunk.rejected if r.at_source)
            extra["rejected"] = int(extra.get("rejected", 0)) + len(chunk.rejected)
            extra["rejectedRows"] = [{"row": r.row, "reason": r.reason} for r in chunk.rejected]
        return Checkpoint(chunk=chunk.number, position=chunk.position, records_read=self.records_read + read,
                          records_written=self.records_written + written, extra=extra)


@dataclass(frozen=True)
class SelectItem:
    """One target column and how to compute it from the source (see `service.sync.transforms`)."""

    target: str
    source: str | None
    cast: str | None
    """A mapping cast type (`CastType` value) applied to the source value, before the target's type."""
    constant: Any = None
    is_constant: bool = False


class Source(Protocol):
    capabilities: Capabilities

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: object, *_: object) -> None: ...

    async def describe(self) -> list[Column]:
        """The columns the source yields, in order; raises TableMissing when the table is absent."""
        ...

    async def start(self, high_water_mark: Any | None) -> Position:
        """The position before the first chunk, fixing the incremental window (if any) for the run."""
        ...

    async def estimate(self, position: Position) -> int | None: ...

    def chunks(
        self, plan: list[SelectItem], target_types: TargetTypes, position: Position, *, size: int, raw: bool
    ) -> AsyncIterator[Chunk]:
        """Chunks of about `size` rows after `position`; `raw` asks for the copy stream, not rows."""
        ...

    def high_water_mark(self, position: Position, previous: Any | None) -> Any | None: ...


class Target(Protocol):
    capabilities: Capabilities

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: object, *_: object) -> None: ...

    async def describe(self) -> list[Column]:
        """The target table's writable columns; raises TableMissing(name, "target") when absent."""
        ...

    async def read_checkpoint(self, key: str) -> Checkpoint | None: ...

    async def prepare(self, key: str, columns: list[str]) -> None:
        """Set up per-run structures (staging tables) idempotently, so a resumed run reuses them."""
        ...

    async def write(self, key: str, chunk: Chunk, previous: Checkpoint) -> Checkpoint | None:
        """Write chunk `chunk.number` and its checkpoint (counts added to `previous`) in one transaction;
        None when that chunk was already written (a replay), which is then skipped."""
        ...

    async def finish(self, key: str, columns: list[str], last: Checkpoint) -> None:
        """Publish the run's rows (overwrite swap) and store `last.as_finished()` in the same transaction.

        The finished checkpoint is kept (not deleted) so that a run whose outcome never reached the state
        store (a crash right after this) is recognised when it is resumed, instead of being written twice.
        """
        ...

    async def abandon(self, key: str) -> None:
        """Drop staging and checkpoint of a cancelled run; the target table stays as it was."""
        ...


@runtime_checkable
class Tolerant(Protocol):
    """A source or target that can set bad rows aside (`Chunk.rejected`) instead of failing the run; the
    engine asks it to only when the batch has an `errorLimit`."""

    def tolerate_bad_rows(self) -> None: ...


@runtime_checkable
class TableCreator(Protocol):
    """A target that can create its table from planned columns (keys: the batch's `keyColumns`)."""

    async def create_table(self, columns: list[Column]) -> None: ...


@runtime_checkable
class SchemalessTarget(Protocol):
    """A target without columns of its own (a Kafka topic of JSON records): it takes the planned columns
    and their kinds, and answers with the columns it will carry, so nothing is checked or cast against
    a schema that does not exist."""

    async def accept_columns(self, columns: list[Column]) -> list[Column]: ...


@runtime_checkable
class StreamTarget(Protocol):
    """A target that takes chunk streams in copy formats besides its own (PostgreSQL: CSV text, which a
    CSV source hands over undecoded); it answers whether it takes `copy_format` for this run."""

    def accept_stream(self, copy_format: str) -> bool: ...


@runtime_checkable
class SliceableSource(Protocol):
    """A table source that can be read in slices (docs/spec.md §10): it answers the planner's questions about one
    column, and once `restrict`ed every later read (estimate, count, chunks) sees only the slice's rows."""

    async def column_kind(self, column: str) -> str | None:
        """The canonical kind (`int`, `date`, `datetime`, ...) of a column of the table; ConfigInvalid if absent."""
        ...

    async def bounds(self, column: str) -> tuple[Any, Any] | None:
        """The smallest and largest non-NULL value of `column` as JSON values; None when every value is NULL."""
        ...

    async def count_range(self, where: "SliceRange", *, exact: bool = True) -> int:
        """The rows in `where`; not `exact`: the database's estimate (its statistics), for tables too big to count."""
        ...

    def restrict(self, where: "SliceRange") -> None:
        """Read only the rows in `where` from now on."""
        ...


@runtime_checkable
class SliceStagingTarget(Protocol):
    """A target an overwrite can be sliced into: each slice stages its rows under its own checkpoint key, and the
    run publishes every stage at once, atomically, after the last slice (readers never see a half-written table)."""

    async def stage_finished(self, key: str, columns: list[str], last: Checkpoint) -> None:
        """The slice `key` staged all its rows: store `last` marked staged (`extra["staged"]`), publish nothing."""
        ...

    async def publish_stages(self, keys: list[str], columns: list[str]) -> None:
        """In one transaction: replace the table's rows with the union of the stages of `keys`, mark each key's
        checkpoint finished, drop the stages. Idempotent: when every key is finished already, nothing happens."""
        ...


class Connectors(Protocol):
    """Builds the source and target of a run: what the engine is handed by the composition root instead
    of knowing which systems exist (`service.connectors.registry.REGISTRY`)."""

    def source_for(self, endpoint: "Endpoint", spec: "SourceSpec", connect_timeout: float) -> Source:
        """An unopened source (enter it with `async with`); ConfigInvalid when the kind cannot be one."""
        ...

    def target_for(self, endpoint: "Endpoint", spec: "TargetSpec", connect_timeout: float) -> Target:
        """An unopened target; ConfigInvalid when the kind cannot be one or lacks the spec's write mode."""
        ...

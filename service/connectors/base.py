"""The connector protocol: a source yields chunks that carry their resume position, a target writes a
chunk together with its checkpoint. Capabilities are data, so the engine picks a path without knowing
which system it talks to (Kafka Connect's poll/put split; dlt's destination capabilities).
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

Position = dict[str, Any]
"""A source's resume position: JSON-serialisable, opaque to the engine."""


@dataclass(frozen=True)
class Capabilities:
    upsert: bool = False
    transactional_checkpoint: bool = False
    """Rows and checkpoint commit together, so a replayed chunk never duplicates rows."""
    copy_format: str | None = None
    """Raw-bytes fast path; a source and a target that name the same format can stream undecoded."""
    cursor: bool = False
    """Incremental reads beyond a high-water mark on a cursor column."""


KINDS = ("int", "float", "decimal", "string", "bool", "date", "datetime", "json", "binary")
"""Canonical column kinds: the common language of the type mapping table (docs/types.md)."""


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    """The type as the system spells it (PostgreSQL: `format_type`), used for casts."""
    kind: str | None = None
    """The canonical kind (one of KINDS), when known: how a target that creates tables maps it."""


@dataclass
class Chunk:
    """One unit of work: either decoded `rows` or a raw `stream` in the shared copy format."""

    number: int
    position: Position
    columns: list[str]
    rows: list[tuple[Any, ...]] | None = None
    stream: AsyncIterator[bytes] | None = None

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
        """The checkpoint saved with `chunk`: its number and position, this one's counts plus its own."""
        return Checkpoint(chunk=chunk.number, position=chunk.position, records_read=self.records_read + read,
                          records_written=self.records_written + written, extra=self.extra)


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
        self, plan: list[SelectItem], target_types: dict[str, str], position: Position, *, size: int, raw: bool
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

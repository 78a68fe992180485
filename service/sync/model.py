"""What the engine needs to run a batch and what it reports back; free of storage and Kafka."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from uuid import UUID

from schemas.api import ErrorLimitSpec, MappingEntry, SourceSpec, TargetSpec
from schemas.events import RunPhase
from service.connectors.base import RejectedRow
from service.slicing.ranges import SliceRange

if TYPE_CHECKING:
    from service.security.policy import AccessPolicy


def _strictest_policy() -> "AccessPolicy":
    from service.security.policy import AccessPolicy

    return AccessPolicy()


@dataclass(frozen=True)
class Endpoint:
    """A connection as the connectors see it (secrets included; never logged)."""

    type: str
    url: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    policy: "AccessPolicy" = field(default_factory=_strictest_policy, compare=False)
    """What this connection may reach; connectors ask it before opening a file or a socket."""

    def __repr__(self) -> str:
        return f"Endpoint(type={self.type!r}, url=<redacted>)"


@dataclass(frozen=True)
class RunSpec:
    run_id: UUID
    checkpoint_key: UUID
    """Runs in one retry chain share it, so a retry finds the checkpoint its predecessor wrote."""
    batch_id: int
    source_endpoint: Endpoint
    source: SourceSpec
    target_endpoint: Endpoint
    target: TargetSpec
    mapping: list[MappingEntry] | None
    chunk_size: int
    high_water_mark: Any | None = None
    error_limit: ErrorLimitSpec | None = None
    """Bad rows up to this limit are rejected (told on `P.rejected`) instead of failing the run."""
    slice: SliceRange | None = None
    """One slice of a split run (docs/spec.md §10): read only this range; `checkpoint_key` is the slice's own.
    An overwrite slice stages its rows and leaves publishing to the run, once every slice has staged."""


@dataclass(frozen=True)
class ProgressUpdate:
    chunk: int
    records_read: int
    records_written: int
    total_estimate: int | None
    checkpoint: Any
    phase: RunPhase = RunPhase.WRITING
    records_rejected: int = 0


@dataclass(frozen=True)
class RunResult:
    records_read: int
    records_written: int
    chunks: int
    resumed_from_chunk: int
    high_water_mark: Any | None = None
    records_rejected: int = 0
    source_count: int | None = None
    """A full run's reconciliation (service/sync/reconcile.py); None for an incremental run or no count."""
    target_count: int | None = None
    reconciled: bool | None = None


class RunObserver(Protocol):
    """The engine's window to the world: the worker persists, throttles and publishes from here."""

    async def on_start(self, resumed_from_chunk: int, total_estimate: int | None) -> None: ...

    async def on_chunk(self, update: ProgressUpdate) -> None: ...

    async def on_phase(self, update: ProgressUpdate) -> None:
        """The run enters `update.phase` (e.g. `publishing`, where the count stands still for a while); told
        even when progress is throttled, so a follower never sees a silent bar."""
        ...

    def cancel_requested(self) -> bool: ...


@runtime_checkable
class RejectObserver(Protocol):
    """An observer that tells rejected rows (the worker: to `P.rejected` through the outbox)."""

    async def on_rejected(self, chunk: int, rows: list[RejectedRow]) -> None:
        """The rows chunk `chunk` set aside, in order; told again after a resume (ids derive from the order)."""
        ...

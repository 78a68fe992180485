"""How each lifecycle event changes a run's history, as data: the one fold of the event log.

`FOLDS` maps every event type of `schemas.events.LifecycleEvent` to the fields it sets and the rule that
merges each one into what the run already holds. The projector compiles it into its SQL upsert
(service/history/projection.py) and audit replay applies it to in-memory trails (service/audit/trail.py),
so the two folds cannot disagree. Every rule is idempotent and monotonic (counts only rise, a terminal run
keeps its outcome), so replaying the log, or part of it, in any order changes nothing (docs/spec.md).

Adding an event is its model in schemas/events.py and its entry here; a new column also needs its
migration and its line on `RunHistory`.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import cached_property
from typing import Any, Generic, TypeVar, assert_never, cast

from sqlalchemy import Column, DefaultClause, Table, TextClause

from schemas.events import (
    LIFECYCLE_EVENTS,
    BatchSliceCompleted,
    BatchSyncCompleted,
    BatchSyncProgress,
    BatchSyncRetryScheduled,
    BatchSyncSkipped,
    BatchSyncStarted,
    ErrorCode,
    Event,
)
from schemas.status import RunStatus
from service.db.models import RunHistory

E = TypeVar("E", bound=Event)
E_contra = TypeVar("E_contra", bound=Event, contravariant=True)


class Merge(Enum):
    """How an event's value combines with the run's current one. A missing value (None) never wins,
    as in SQL's coalesce, least and greatest."""

    FIRST = "first"
    """The first event that names it decides: who asked, how, which batch."""
    LATEST = "latest"
    """The event's value replaces the run's: the outcome, which only a Completed event carries."""
    LATEST_KNOWN = "latest known"
    """The event's value, unless it has none."""
    LOWEST = "lowest"
    """The earliest time wins."""
    HIGHEST = "highest"
    """Counts and times only rise."""
    HIGHEST_WHILE_OPEN = "highest while open"
    """Rises until the run is terminal; after that the outcome's value stands."""
    WHILE_OPEN = "while open"
    """The event's value until the run is terminal; a late event never reopens a finished run."""
    COUNT = "count"
    """Adds the event's value."""


Combine = Callable[[Any, Any, bool], Any]
"""(the run's value, the event's value, whether the run is still open) → the run's new value."""


def combine(merge: Merge) -> Combine:
    """A rule in Python, for folds kept in memory; `projection.merged` is the same rule in SQL."""
    match merge:
        case Merge.FIRST:
            return lambda old, new, _open: new if old is None else old
        case Merge.LATEST:
            return lambda _old, new, _open: new
        case Merge.LATEST_KNOWN:
            return lambda old, new, _open: old if new is None else new
        case Merge.LOWEST:
            return lambda old, new, _open: new if old is None or (new is not None and new < old) else old
        case Merge.HIGHEST:
            return _highest
        case Merge.HIGHEST_WHILE_OPEN:
            return lambda old, new, is_open: _highest(old, new, is_open) if is_open else old
        case Merge.WHILE_OPEN:
            return lambda old, new, is_open: new if is_open else old
        case Merge.COUNT:
            return lambda old, new, _open: (old or 0) + new
        case _:
            assert_never(merge)


def _highest(old: Any, new: Any, _open: bool) -> Any:
    return new if old is None or (new is not None and new > old) else old


@dataclass(frozen=True)
class Rule(Generic[E_contra]):
    """One field an event sets: how, and from what (the value as the column holds it: enums as text)."""

    merge: Merge
    value: Callable[[E_contra], Any]


Step = tuple[int, int, int, int, datetime]
"""A progress step as the audit trail keeps it: chunk, records read, records written, elapsed ms, when."""


@dataclass(frozen=True)
class Fold(Generic[E]):
    """An event type's effect: the `run_history` columns it sets, the fields only the audit trail keeps
    (no column holds them), and the progress step it records, if any."""

    history: Mapping[str, Rule[E]]
    audit: Mapping[str, Rule[E]] = field(default_factory=dict)
    step: Callable[[E], Step] | None = None

    @cached_property
    def in_memory(self) -> tuple[tuple[str, Callable[[E], Any], Combine | None], ...]:
        """Every field with its value and its rule in Python (None: the value simply replaces), ready for
        a fold run millions of times."""
        rules = {**self.history, **self.audit}
        return tuple((name, rule.value, None if rule.merge is Merge.LATEST else COMBINE[rule.merge])
                     for name, rule in rules.items())


def completed_status(event: BatchSyncCompleted) -> RunStatus:
    """The outcome a Completed event announces."""
    if event.success:
        return RunStatus.SUCCESS
    if event.error_code is ErrorCode.CANCELLED:
        return RunStatus.CANCELLED
    return RunStatus.FAILED


def every_event() -> dict[str, Rule[Event]]:
    """What every event sets, whatever its type: the start of each entry below."""
    return {
        "batch_id": Rule(Merge.FIRST, lambda e: e.batch_id),
        "correlation_id": Rule(Merge.FIRST, lambda e: e.correlation_id),
        "events": Rule(Merge.COUNT, lambda _e: 1),
        "last_event_at": Rule(Merge.HIGHEST, lambda e: e.occurred_at),
    }


STARTED: Fold[BatchSyncStarted] = Fold(
    history={
        **every_event(),
        "status": Rule(Merge.WHILE_OPEN, lambda _e: RunStatus.RUNNING.value),
        "trigger": Rule(Merge.FIRST, lambda e: e.trigger.value),
        "requested_by": Rule(Merge.FIRST, lambda e: e.requested_by),
        "started_at": Rule(Merge.LOWEST, lambda e: e.started_at),
        "resumed_from_run_id": Rule(Merge.LATEST_KNOWN, lambda e: e.resumed_from_run_id),
        "config_hash": Rule(Merge.LATEST_KNOWN, lambda e: e.config_hash),
    },
    audit={"resumed_from_chunk": Rule(Merge.HIGHEST, lambda e: e.resumed_from_chunk)},
)

PROGRESS: Fold[BatchSyncProgress] = Fold(
    history={
        **every_event(),
        "status": Rule(Merge.WHILE_OPEN, lambda _e: RunStatus.RUNNING.value),
        "records_read": Rule(Merge.HIGHEST, lambda e: e.records_read),
        "records_synced": Rule(Merge.HIGHEST_WHILE_OPEN, lambda e: e.records_written),
        "chunks": Rule(Merge.HIGHEST, lambda e: e.chunk),
    },
    step=lambda e: (e.chunk, e.records_read, e.records_written, e.elapsed_ms, e.occurred_at),
)

COMPLETED: Fold[BatchSyncCompleted] = Fold(
    history={
        **every_event(),
        "status": Rule(Merge.LATEST, lambda e: completed_status(e).value),
        "finished_at": Rule(Merge.LATEST, lambda e: e.sync_time),
        "records_synced": Rule(Merge.LATEST, lambda e: e.records_synced),
        "duration_ms": Rule(Merge.LATEST, lambda e: e.duration_ms),
        "message": Rule(Merge.LATEST, lambda e: e.message),
        "error_code": Rule(Merge.LATEST, lambda e: e.error_code.value if e.error_code else None),
        "cancelled_by": Rule(Merge.LATEST, lambda e: e.cancelled_by),
        "success": Rule(Merge.LATEST, lambda e: e.success),
        "records_rejected": Rule(Merge.LATEST, lambda e: e.records_rejected),
        "source_count": Rule(Merge.LATEST, lambda e: e.source_count),
        "target_count": Rule(Merge.LATEST, lambda e: e.target_count),
        "reconciled": Rule(Merge.LATEST, lambda e: e.reconciled),
    },
)

SKIPPED: Fold[BatchSyncSkipped] = Fold(
    history={
        **every_event(),
        "status": Rule(Merge.FIRST, lambda _e: RunStatus.PENDING.value),
        "skipped_fires": Rule(Merge.COUNT, lambda _e: 1),
        "last_skipped_fire_at": Rule(Merge.HIGHEST, lambda e: e.fire_time),
    },
)
"""A skipped fire is told on the active run that caused it; `status` only fills a row the run's own events
have not made yet (they decide it)."""

RETRY_SCHEDULED: Fold[BatchSyncRetryScheduled] = Fold(
    history={
        **every_event(),
        "status": Rule(Merge.FIRST, lambda _e: RunStatus.FAILED.value),
        "retried_by_run_id": Rule(Merge.FIRST, lambda e: e.retry_run_id),
        "retry_attempt": Rule(Merge.FIRST, lambda e: e.attempt),
    },
)
"""Told on the failed run the retry policy resumed; the resuming run tells its own story (trigger `retry`)."""

SLICE_COMPLETED: Fold[BatchSliceCompleted] = Fold(
    history={
        **every_event(),
        "status": Rule(Merge.WHILE_OPEN, lambda _e: RunStatus.RUNNING.value),
        "slices_completed": Rule(Merge.COUNT, lambda _e: 1),
        "slices_failed": Rule(Merge.COUNT, lambda e: 0 if e.success else 1),
    },
)
"""A slice of a split run ended; the run's own Completed event tells the outcome (its counts are the sums)."""

FOLDS: dict[type[Event], Fold[Any]] = {
    BatchSyncStarted: STARTED,
    BatchSyncProgress: PROGRESS,
    BatchSyncCompleted: COMPLETED,
    BatchSyncSkipped: SKIPPED,
    BatchSyncRetryScheduled: RETRY_SCHEDULED,
    BatchSliceCompleted: SLICE_COMPLETED,
}
"""The fold table. Dispatch is a lookup by the parsed model's type: an unknown `eventType` never gets
here, the parser refuses it first (the projector sends it to the DLQ, audit replay counts it invalid)."""

COMBINE: dict[Merge, Combine] = {merge: combine(merge) for merge in Merge}


def fold_for(event: Event) -> Fold[Any]:
    return FOLDS[type(event)]


def _unset(column: Column[Any]) -> Any:
    """The column's server default as Python: an integer, a quoted text, or None."""
    default = column.server_default
    if not (isinstance(default, DefaultClause) and isinstance(default.arg, TextClause)):
        return None
    literal = default.arg.text
    return int(literal) if literal.lstrip("-").isdigit() else literal.strip("'")


RUN_HISTORY = cast(Table, RunHistory.__table__)

HISTORY_COLUMNS: tuple[str, ...] = tuple(c.name for c in RUN_HISTORY.columns if c.name != "run_id")
"""What a run's history holds besides its id, in the table's order."""

UNSET: dict[str, Any] = {
    **{c.name: _unset(c) for c in RUN_HISTORY.columns if c.name != "run_id"},
    **{name: None for fold in FOLDS.values() for name in fold.audit},
}
"""A run before any event set anything: the columns' server defaults (0 for the counts), and None for
the fields only the audit trail keeps."""


def check_table() -> None:
    """Every lifecycle event folds, and only into columns that exist: a gap fails at start-up, not on
    the first such event in production."""
    missing = [event.__name__ for event in LIFECYCLE_EVENTS if event not in FOLDS]
    if missing:
        raise TypeError(f"no fold for {', '.join(missing)} in service/history/folds.py")
    unknown = {name for fold in FOLDS.values() for name in fold.history} - set(HISTORY_COLUMNS)
    if unknown:
        raise TypeError(f"folds set columns run_history does not have: {sorted(unknown)}")


check_table()

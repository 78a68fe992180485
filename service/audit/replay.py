"""Audit replay (docs/spec.md §6): fold the events topic into per-run trails, optionally rewrite the projection
from them, then compare them with `run_history` and `runs` page by page.

The log is read through the `EventSource` port (the Kafka reader lives in `consumers/`). Differences on
runs whose latest event is younger than `settle_seconds` before the read began are counted as
unsettled, not as mismatches: the outbox relay and the projector may simply not have caught up.

Every record must carry the service's signature (docs/spec.md §7, trust boundaries). One that does not
is a `forged` mismatch wherever it lies in what was read (the filters choose what to compare, but they
read the forger's own claims, so they cannot excuse a forgery), and it is never folded, so `--rebuild`
never projects it.
"""

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Protocol

import asyncpg
from pydantic import ValidationError

from schemas.events import LifecycleEvent, lifecycle_event_adapter
from schemas.status import TERMINAL
from service.audit import store
from service.audit.compare import Mismatch, compare_history, compare_runs, runs_status_agrees
from service.audit.forged import LogRecord, forged_mismatch
from service.audit.jsonl import TrailWriter
from service.audit.trail import RunTrail, to_millis
from service.security.event_signing import EventKeys

DEFAULT_SETTLE_SECONDS = 5.0


class LogUnavailable(Exception):
    """The events topic could not be read (broker down, or it stopped answering)."""


class EventSource(Protocol):
    """The events topic from a start point to the end observed when reading began, as whole records
    (the signature is in the headers)."""

    @property
    def total(self) -> int | None:
        """How many records the read covers, once known (for progress)."""

    @property
    def end_offsets(self) -> dict[int, int]:
        """Partition → where the read stopped (-1: nothing at or after the start time)."""

    def batches(self) -> AsyncIterator[list[LogRecord]]: ...


@dataclass(frozen=True)
class ReplayOptions:
    since: datetime | None = None
    batch_id: int | None = None
    rebuild: bool = False
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    projector_group: str = ""
    topic: str = ""


@dataclass
class ReplayReport:
    events_read: int = 0
    events_skipped: int = 0
    invalid_events: int = 0
    forged_events: int = 0
    runs_checked: int = 0
    runs_in_progress: int = 0
    runs_of_deleted_batches: int = 0
    unsettled: int = 0
    rebuilt_runs: int | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    end_offsets: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches


Progress = Callable[[int, int | None], None]


async def replay(conn: asyncpg.Connection, source: EventSource, options: ReplayOptions, keys: EventKeys,
                 output: IO[str] | None = None, progress: Progress | None = None) -> ReplayReport:
    """Read, rebuild if asked (one transaction), compare; the caller owns the connection and the source.

    `keys` check every record's signature: only genuine events are folded."""
    report = ReplayReport()
    began = datetime.now(UTC)
    writer = TrailWriter(output, options.since) if output is not None else None
    if options.rebuild:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await store.begin_rebuild(conn)
            trails = await _fold(source, options, keys, report, writer, progress, conn)
            await store.finish_rebuild(conn, _in_scope(trails, options), batch_id=options.batch_id,
                                       group_id=options.projector_group, topic=options.topic,
                                       end_offsets=source.end_offsets)
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()
        report.rebuilt_runs = sum(1 for _ in _in_scope(trails, options))
    else:
        trails = await _fold(source, options, keys, report, writer, progress, None)
    if writer is not None:
        writer.finish(trails.values())
    report.end_offsets = dict(source.end_offsets)
    cutoff = began - timedelta(seconds=options.settle_seconds)
    await _compare(conn, trails, options, report, cutoff)
    return report


async def _fold(source: EventSource, options: ReplayOptions, keys: EventKeys, report: ReplayReport,
                writer: TrailWriter | None, progress: Progress | None,
                staging: asyncpg.Connection | None) -> dict[uuid.UUID, RunTrail]:
    trails: dict[uuid.UUID, RunTrail] = {}
    since = to_millis(options.since)
    async for records in source.batches():
        staged: list[tuple[uuid.UUID, uuid.UUID | None]] = []
        for record in records:
            event = _genuine_event(record, keys, report)
            if event is None:
                continue
            if (options.batch_id is not None and event.batch_id != options.batch_id) or (
                    since is not None and event.occurred_at < since):
                report.events_skipped += 1
                continue
            if staging is not None:
                staged.append((event.event_id, event.run_id))
            if event.run_id is not None:
                _fold_event(trails, event.run_id, event, writer, since)
        if staging is not None:
            await store.stage_events(staging, staged)
        if progress is not None:
            progress(len(records), source.total)
    return trails


def _genuine_event(record: LogRecord, keys: EventKeys, report: ReplayReport) -> LifecycleEvent | None:
    """The record's event, or None (counted) when it is forged or not a lifecycle event."""
    report.events_read += 1
    if (refusal := keys.refusal(record)) is not None:
        report.forged_events += 1
        report.mismatches.append(forged_mismatch(record, refusal))
        return None
    try:
        return lifecycle_event_adapter.validate_json(record.value or b"")
    except ValidationError:
        report.invalid_events += 1
        return None


def _fold_event(trails: dict[uuid.UUID, RunTrail], run_id: uuid.UUID, event: LifecycleEvent,
                writer: TrailWriter | None, since: datetime | None) -> None:
    trail = trails.get(run_id)
    if trail is None:
        trail = trails[run_id] = RunTrail(run_id, keep_steps=writer is not None)
    was_terminal = trail.terminal
    trail.apply(event)
    if writer is not None and trail.terminal and not was_terminal:
        writer.write(trail)
    elif since is not None and trail.started_at is not None and trail.started_at < since:
        trail.steps = None  # started before the window: no line will be written for it


def _started_in_scope(trail: RunTrail, since: datetime | None) -> bool:
    return since is None or (trail.started_at is not None and trail.started_at >= since)


def _in_scope(trails: dict[uuid.UUID, RunTrail], options: ReplayOptions) -> Iterator[RunTrail]:
    since = to_millis(options.since)
    return (t for t in trails.values() if _started_in_scope(t, since))


def _settled(cutoff: datetime, *times: datetime | None) -> bool:
    return all(t is None or t < cutoff for t in times)


async def _compare(conn: asyncpg.Connection, trails: dict[uuid.UUID, RunTrail], options: ReplayOptions,
                   report: ReplayReport, cutoff: datetime) -> None:
    since = to_millis(options.since)
    if since is not None:
        for run_id in [r for r, t in trails.items() if not _started_in_scope(t, since)]:
            del trails[run_id]
    comparison = _Comparison(trails, report, cutoff)
    async for page in store.history_pages(conn, options.batch_id, since):
        for row in page:
            comparison.history_row(row)
    existing_batches = await store.batch_ids(conn)
    async for page in store.runs_pages(conn, options.batch_id, since):
        for row in page:
            comparison.runs_row(row)
    comparison.unmatched_trails(existing_batches)


class _Comparison:
    """The log's trails against the database's rows; differences on runs too young to have settled
    are counted as unsettled rather than reported."""

    def __init__(self, trails: dict[uuid.UUID, RunTrail], report: ReplayReport, cutoff: datetime) -> None:
        self._trails = trails
        self._report = report
        self._cutoff = cutoff
        self._rows_without_trail: set[uuid.UUID] = set()

    def _flag(self, run_id: uuid.UUID, batch_id: int | None, kind: str, detail: str,
              *times: datetime | None) -> None:
        if _settled(self._cutoff, *times):
            self._report.mismatches.append(Mismatch(run_id, batch_id, kind, detail))
        else:
            self._report.unsettled += 1

    def history_row(self, row: dict[str, Any]) -> None:
        trail = self._trails.get(row["run_id"])
        if trail is None:
            self._flag(row["run_id"], row["batch_id"], "missing-in-log",
                       f"run_history has it ({row['status']}) but no event of it is in the log", row["last_event_at"])
            self._rows_without_trail.add(row["run_id"])
            return
        trail.in_history = True
        differences = compare_history(trail, row)
        if differences:
            self._flag(trail.run_id, trail.batch_id, "history-differs", "; ".join(differences),
                       trail.last_event_at, row["last_event_at"])

    def runs_row(self, row: dict[str, Any]) -> None:
        trail = self._trails.get(row["id"])
        if trail is None:
            if row["status"] in TERMINAL:
                self._flag(row["id"], row["batch_id"], "missing-in-log",
                           f"runs has it ({row['status']}) but no event of it is in the log", row["finished_at"])
                self._rows_without_trail.add(row["id"])
            return
        trail.in_runs = True
        if trail.terminal:
            differences = compare_runs(trail, row)
        elif row["status"] in TERMINAL:
            differences = [f"status: log=RUNNING (no outcome event) db={row['status']!r}"]
            differences += runs_status_agrees(trail, row)
        else:
            differences = runs_status_agrees(trail, row)
        if differences:
            self._flag(trail.run_id, trail.batch_id, "runs-differs", "; ".join(differences),
                       trail.last_event_at, row["finished_at"])

    def unmatched_trails(self, existing_batches: set[int]) -> None:
        """Count every run, and flag those the log has but a table lacks (runs of a deleted batch are
        gone from `runs` by design)."""
        report = self._report
        for trail in self._trails.values():
            report.runs_checked += 1
            if not trail.terminal:
                report.runs_in_progress += 1
            if not trail.in_history:
                self._flag(trail.run_id, trail.batch_id, "missing-in-history",
                           f"the log has it ({trail.status}) but run_history does not", trail.last_event_at)
            if not trail.in_runs:
                if trail.batch_id not in existing_batches:
                    report.runs_of_deleted_batches += 1
                else:
                    self._flag(trail.run_id, trail.batch_id, "missing-in-runs",
                               f"the log has it ({trail.status}) but runs does not", trail.last_event_at)
        report.runs_checked += len(self._rows_without_trail)


def summary_lines(report: ReplayReport) -> list[str]:
    """The human summary: counts first, then each mismatch on its own line."""
    lines = [
        f"events read: {report.events_read} (skipped {report.events_skipped}, invalid {report.invalid_events}, "
        f"forged {report.forged_events})",
        f"runs checked: {report.runs_checked} (in progress {report.runs_in_progress}, "
        f"of deleted batches {report.runs_of_deleted_batches}, unsettled {report.unsettled})",
    ]
    if report.rebuilt_runs is not None:
        lines.append(f"projection rebuilt: {report.rebuilt_runs} runs")
    lines.append(f"mismatches: {len(report.mismatches)}")
    lines.extend(m.line() for m in report.mismatches)
    return lines


"""A run's history rebuilt from its lifecycle events alone, folded exactly as the projector folds them.

The fold mirrors `service.history.projection`: the first Started names who asked and how, the earliest
`startedAt` wins, progress only raises counts (and stops moving them once the run is terminal), the last
Completed decides the outcome. It is idempotent, so duplicated events (at-least-once delivery) change
nothing but the raw event count. Only this small summary is kept per run, never the events, so a log of
millions of events replays in flat memory.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from schemas.base import format_time
from schemas.events import BatchSyncCompleted, BatchSyncProgress, BatchSyncStarted
from service.history.projection import TERMINAL, completed_status

LifecycleEvent = BatchSyncStarted | BatchSyncProgress | BatchSyncCompleted


def to_millis(value: datetime | None) -> datetime | None:
    """Times travel on the wire to the millisecond; compare everything at that precision, in UTC."""
    if value is None:
        return None
    if value.tzinfo is UTC and value.microsecond % 1000 == 0:
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


class RunTrail:
    """Everything the log says about one run, in the shape of a `run_history` row plus the audit extras."""

    __slots__ = (
        "run_id", "batch_id", "correlation_id", "status", "trigger", "requested_by", "started_at",
        "first_started_occurred_at", "finished_at", "records_synced", "records_read", "chunks", "duration_ms",
        "message", "error_code", "success", "resumed_from_run_id", "resumed_from_chunk", "config_hash",
        "cancelled_by", "events", "last_event_at", "steps", "written", "in_history", "in_runs",
    )

    def __init__(self, run_id: uuid.UUID, batch_id: int, correlation_id: str, keep_steps: bool) -> None:
        self.run_id = run_id
        self.batch_id = batch_id
        self.correlation_id = correlation_id
        self.status = "RUNNING"
        self.trigger: str | None = None
        self.requested_by: str | None = None
        self.started_at: datetime | None = None
        self.first_started_occurred_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.records_synced = 0
        self.records_read = 0
        self.chunks = 0
        self.duration_ms: int | None = None
        self.message: str | None = None
        self.error_code: str | None = None
        self.success: bool | None = None
        self.resumed_from_run_id: uuid.UUID | None = None
        self.resumed_from_chunk: int | None = None
        self.config_hash: str | None = None
        self.cancelled_by: str | None = None
        self.events = 0
        self.last_event_at: datetime | None = None
        self.steps: list[tuple[int, int, int, int, datetime]] | None = [] if keep_steps else None
        self.written = False
        self.in_history = False
        self.in_runs = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def apply(self, event: LifecycleEvent) -> None:
        self.events += 1
        occurred = to_millis(event.occurred_at)
        if self.last_event_at is None or (occurred is not None and occurred > self.last_event_at):
            self.last_event_at = occurred
        if isinstance(event, BatchSyncStarted):
            self._started(event, occurred)
        elif isinstance(event, BatchSyncProgress):
            self._progress(event, occurred)
        else:
            self._completed(event)

    def _started(self, event: BatchSyncStarted, occurred: datetime | None) -> None:
        self.trigger = self.trigger or event.trigger.value
        self.requested_by = self.requested_by or event.requested_by
        started = to_millis(event.started_at)
        if self.started_at is None or (started is not None and started < self.started_at):
            self.started_at = started
        if self.first_started_occurred_at is None:
            self.first_started_occurred_at = occurred
        self.resumed_from_run_id = event.resumed_from_run_id or self.resumed_from_run_id
        self.config_hash = event.config_hash or self.config_hash
        self.resumed_from_chunk = event.resumed_from_chunk if self.resumed_from_chunk is None else max(
            self.resumed_from_chunk, event.resumed_from_chunk)

    def _progress(self, event: BatchSyncProgress, occurred: datetime | None) -> None:
        self.records_read = max(self.records_read, event.records_read)
        if not self.terminal:
            self.records_synced = max(self.records_synced, event.records_written)
        self.chunks = max(self.chunks, event.chunk)
        if self.steps is not None and occurred is not None:
            step = (event.chunk, event.records_read, event.records_written, event.elapsed_ms, occurred)
            if step not in self.steps[-3:]:
                self.steps.append(step)

    def _completed(self, event: BatchSyncCompleted) -> None:
        self.status = completed_status(event).value
        self.finished_at = to_millis(event.sync_time)
        self.records_synced = event.records_synced
        self.duration_ms = event.duration_ms
        self.message = event.message
        self.error_code = event.error_code.value if event.error_code else None
        self.cancelled_by = event.cancelled_by
        self.success = event.success

    def history_fields(self) -> dict[str, Any]:
        """The columns `run_history` holds for this run (what the projection must equal)."""
        return {
            "batch_id": self.batch_id, "status": self.status, "trigger": self.trigger,
            "requested_by": self.requested_by, "started_at": self.started_at, "finished_at": self.finished_at,
            "records_synced": self.records_synced, "records_read": self.records_read, "chunks": self.chunks,
            "duration_ms": self.duration_ms, "message": self.message, "error_code": self.error_code,
            "success": self.success, "resumed_from_run_id": self.resumed_from_run_id,
            "config_hash": self.config_hash, "cancelled_by": self.cancelled_by,
        }

    def record(self) -> dict[str, Any]:
        """The JSON Lines audit record: who asked, how, what, when, each step and the outcome (camelCase)."""
        return {
            "runId": str(self.run_id),
            "batchId": self.batch_id,
            "correlationId": self.correlation_id,
            "trigger": self.trigger,
            "requestedBy": self.requested_by,
            "resumedFromRunId": str(self.resumed_from_run_id) if self.resumed_from_run_id else None,
            "resumedFromChunk": self.resumed_from_chunk,
            "configHash": self.config_hash,
            "status": self.status,
            "success": self.success,
            "startedAt": _time(self.started_at),
            "finishedAt": _time(self.finished_at),
            "durationMs": self.duration_ms,
            "recordsRead": self.records_read,
            "recordsSynced": self.records_synced,
            "chunks": self.chunks,
            "errorCode": self.error_code,
            "message": self.message,
            "cancelledBy": self.cancelled_by,
            "events": self.events,
            "lastEventAt": _time(self.last_event_at),
            "progress": [
                {"chunk": c, "recordsRead": r, "recordsWritten": w, "elapsedMs": e, "at": _time(at)}
                for c, r, w, e, at in (self.steps or [])
            ],
        }


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None

"""A run's history rebuilt from its lifecycle events alone, by the projector's own fold table.

`service.history.folds` says what each event sets and how; this applies it to a dict where the projector
compiles it to SQL, so the two folds agree by construction. Times are kept to the millisecond, as the wire
carries them. Only this small summary is kept per run, never the events, so a log of millions of events
replays in flat memory; progress steps are kept only while a JSON Lines trail is being written.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from schemas.base import format_time
from schemas.events import LifecycleEvent
from schemas.status import TERMINAL
from service.history.folds import HISTORY_COLUMNS, UNSET, Step, fold_for

BOOKKEEPING = frozenset({"correlation_id", "last_event_at", "events", "skipped_fires"})
"""Columns of `run_history` that are the projection's bookkeeping, not facts about the run (`events` and
`skipped_fires` count distinct event ids there, every delivery here; `lastSkippedFireAt` is compared)."""
HISTORY_FIELDS = tuple(name for name in HISTORY_COLUMNS if name not in BOOKKEEPING)
"""What the projection and the trail must agree on, in the table's order."""


def to_millis(value: datetime | None) -> datetime | None:
    """Times travel on the wire to the millisecond; compare everything at that precision, in UTC."""
    if value is None:
        return None
    if value.microsecond % 1000 == 0 and (value.tzinfo is UTC or value.tzinfo == UTC):
        return value  # what the wire gives (pydantic's own UTC zone): the hot path of a replay
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


class RunTrail:
    """Everything the log says about one run: the fields of its `run_history` row plus the audit extras
    (`fields`), the steps it went through, and what the comparison found."""

    __slots__ = ("run_id", "fields", "steps", "written", "in_history", "in_runs")

    def __init__(self, run_id: uuid.UUID, keep_steps: bool) -> None:
        self.run_id = run_id
        self.fields: dict[str, Any] = dict(UNSET)  # every field any fold sets, audit extras included
        self.steps: list[Step] | None = [] if keep_steps else None
        self.written = False
        self.in_history = False
        self.in_runs = False

    @property
    def batch_id(self) -> int:
        return int(self.fields["batch_id"])

    @property
    def status(self) -> str | None:
        return self.fields["status"]  # type: ignore[no-any-return]

    @property
    def started_at(self) -> datetime | None:
        return self.fields["started_at"]  # type: ignore[no-any-return]

    @property
    def last_event_at(self) -> datetime | None:
        return self.fields["last_event_at"]  # type: ignore[no-any-return]

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def apply(self, event: LifecycleEvent) -> None:
        """Fold one event in, by the rules of its fold entry, each judged against the run as it was."""
        fold = fold_for(event)
        fields = self.fields
        is_open = fields["status"] not in TERMINAL
        for name, value, combine in fold.in_memory:
            new = value(event)
            if isinstance(new, datetime):
                new = to_millis(new)
            fields[name] = new if combine is None else combine(fields.get(name), new, is_open)
        if fold.step is not None and self.steps is not None:
            chunk, read, written, elapsed, occurred = fold.step(event)
            step = (chunk, read, written, elapsed, to_millis(occurred) or occurred)
            if step not in self.steps[-3:]:  # a redelivered step is kept once
                self.steps.append(step)

    def history_fields(self) -> dict[str, Any]:
        """The columns `run_history` holds for this run (what the projection must equal)."""
        return {name: self.fields[name] for name in HISTORY_FIELDS}

    def record(self) -> dict[str, Any]:
        """The JSON Lines audit record: who asked, how, what, when, each step and the outcome (camelCase)."""
        f = self.fields
        return {
            "runId": str(self.run_id),
            "batchId": f["batch_id"],
            "correlationId": f["correlation_id"],
            "trigger": f["trigger"],
            "requestedBy": f["requested_by"],
            "resumedFromRunId": str(f["resumed_from_run_id"]) if f["resumed_from_run_id"] else None,
            "resumedFromChunk": f.get("resumed_from_chunk"),
            "configHash": f["config_hash"],
            "status": f["status"],
            "success": f["success"],
            "startedAt": _time(f["started_at"]),
            "finishedAt": _time(f["finished_at"]),
            "durationMs": f["duration_ms"],
            "recordsRead": f["records_read"],
            "recordsSynced": f["records_synced"],
            "chunks": f["chunks"],
            "errorCode": f["error_code"],
            "message": f["message"],
            "cancelledBy": f["cancelled_by"],
            "recordsRejected": f["records_rejected"],
            "sourceCount": f["source_count"],
            "targetCount": f["target_count"],
            "reconciled": f["reconciled"],
            "retriedByRunId": str(f["retried_by_run_id"]) if f["retried_by_run_id"] else None,
            "retryAttempt": f["retry_attempt"],
            "skippedFires": f["skipped_fires"],
            "lastSkippedFireAt": _time(f["last_skipped_fire_at"]),
            "events": f["events"],
            "lastEventAt": _time(f["last_event_at"]),
            "progress": [
                {"chunk": c, "recordsRead": r, "recordsWritten": w, "elapsedMs": e, "at": _time(at)}
                for c, r, w, e, at in (self.steps or [])
            ],
        }


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None

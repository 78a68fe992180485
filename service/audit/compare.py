"""Compare a run rebuilt from the log with the database's two records of it: `run_history` (the
projection of the same events, which must be equal field for field) and `runs` (the worker's own
record, which must agree with the outcome the events announced once the run is terminal).

Pure functions over plain dicts, so the rules are unit-tested without a database.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.status import ACTIVE, TERMINAL, RunStatus
from service.audit.trail import HISTORY_FIELDS, RunTrail, to_millis
from service.runs.snapshot import config_hash


@dataclass(frozen=True)
class Mismatch:
    """One difference, named so an auditor can find the run: where it is, and what differs."""

    run_id: uuid.UUID | None
    batch_id: int | None
    kind: str  # missing-in-history | missing-in-runs | missing-in-log | history-differs | runs-differs | forged
    detail: str

    def line(self) -> str:
        return f"{self.kind} run={self.run_id} batch={self.batch_id}: {self.detail}"

    def record(self) -> dict[str, Any]:
        return {"runId": str(self.run_id) if self.run_id is not None else None, "batchId": self.batch_id,
                "kind": self.kind, "detail": self.detail}


def _norm(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_millis(value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return repr(value)


def _diff(expected: dict[str, Any], actual: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    return [
        f"{name}: log={_show(_norm(expected[name]))} db={_show(_norm(actual.get(name)))}"
        for name in fields
        if expected[name] != actual.get(name) and _norm(expected[name]) != _norm(actual.get(name))
    ]


def compare_history(trail: RunTrail, row: dict[str, Any]) -> list[str]:
    """Every projected column must equal the fold of the events (the projection is that same fold)."""
    return _diff(trail.history_fields(), row, HISTORY_FIELDS)


def runs_view(row: dict[str, Any]) -> dict[str, Any]:
    """A `runs` row in the vocabulary of the events: what the worker would have announced from it."""
    started, finished = row.get("started_at"), row.get("finished_at")
    duration = int((finished - started).total_seconds() * 1000) if started and finished else 0
    status = row["status"]
    snapshot = row.get("config")
    return {
        "batch_id": row["batch_id"],
        "status": status,
        "trigger": row["trigger"],
        "requested_by": row["requested_by"],
        "started_at": started,
        "finished_at": finished,
        "records_synced": row["records_written"],
        "duration_ms": duration,
        "message": row.get("message") or "",
        "error_code": row.get("error_code"),
        "cancelled_by": row.get("cancel_requested_by") if status == RunStatus.CANCELLED else None,
        "resumed_from_run_id": row.get("resumed_from_run_id"),
        "config_hash": row.get("config_hash"),
        "records_rejected": row.get("records_rejected") or 0,
        "source_count": row.get("source_count"),
        "target_count": row.get("target_count"),
        "reconciled": row.get("reconciled"),
        "config_snapshot_hash": config_hash(snapshot) if snapshot is not None else None,
    }


RUNS_FIELDS = (
    "batch_id", "status", "trigger", "requested_by", "started_at", "finished_at", "records_synced", "duration_ms",
    "message", "error_code", "cancelled_by", "resumed_from_run_id", "config_hash", "records_rejected",
    "source_count", "target_count", "reconciled",
)


def compare_runs(trail: RunTrail, row: dict[str, Any]) -> list[str]:
    """A terminal run's record must tell the same outcome as its events, and its config snapshot must
    still hash to the configHash its Started event carried (so the config a run used is provable)."""
    view = runs_view(row)
    expected = {**trail.history_fields(), "message": trail.fields["message"] or ""}
    if expected["duration_ms"] is None:
        expected["duration_ms"] = view["duration_ms"]
    differences = _diff(expected, view, RUNS_FIELDS)
    if view["config_snapshot_hash"] is not None and view["config_snapshot_hash"] != expected["config_hash"]:
        differences.append(f"config: snapshot hashes to {view['config_snapshot_hash']}, "
                           f"log configHash={expected['config_hash']!r}")
    return differences


def runs_status_agrees(trail: RunTrail, row: dict[str, Any]) -> list[str]:
    """A run the log still sees open: the worker's record may be active, or have just finished
    (its Completed event may not be relayed yet), but it cannot disagree on who asked and how."""
    if row["status"] not in ACTIVE and row["status"] not in TERMINAL:
        return [f"status: db={row['status']!r} is not a run status"]
    return _diff(trail.history_fields(), runs_view(row), ("batch_id", "trigger", "requested_by"))

"""The run trail folds events as the projector does, and the comparison names what differs."""

import io
import json
import uuid
from datetime import UTC, datetime, timedelta

from schemas.events import BatchSyncCompleted, BatchSyncProgress, BatchSyncStarted, ErrorCode, Trigger
from service.audit.compare import compare_history, compare_runs, runs_view
from service.audit.jsonl import TrailWriter
from service.audit.trail import RunTrail, to_millis
from service.runs.snapshot import config_hash

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
CONFIG = {"batchId": 7, "chunkSize": 100}


def events(run_id: uuid.UUID, *, cancelled: bool = False) -> list:
    common = {"batch_id": 7, "run_id": run_id, "correlation_id": "c1", "producer": "test"}
    started = BatchSyncStarted(**common, trigger=Trigger.RETRY, requested_by="ops", started_at=T0,
                               resumed_from_run_id=uuid.UUID(int=1), resumed_from_chunk=3,
                               config_hash=config_hash(CONFIG), occurred_at=T0)
    progress = [BatchSyncProgress(**common, chunk=n, records_read=100 * n, records_written=100 * n, elapsed_ms=n,
                                  records_per_second=1.0, occurred_at=T0 + timedelta(seconds=n)) for n in (4, 5)]
    done = BatchSyncCompleted(**common, success=not cancelled, message="已取消" if cancelled else "同步成功",
                              sync_time=T0 + timedelta(seconds=9), records_synced=500, duration_ms=9000,
                              error_code=ErrorCode.CANCELLED if cancelled else None,
                              cancelled_by="carol" if cancelled else None, occurred_at=T0 + timedelta(seconds=9))
    return [started, *progress, done]


def fold(evts) -> RunTrail:
    trail = RunTrail(evts[0].run_id, keep_steps=True)
    for event in evts:
        trail.apply(event)
    return trail


def runs_row(trail: RunTrail, **changes) -> dict:
    row = {"batch_id": 7, "status": trail.status, "trigger": "retry", "requested_by": "ops", "started_at": T0,
           "finished_at": T0 + timedelta(seconds=9), "records_written": 500, "message": trail.fields["message"],
           "error_code": trail.fields["error_code"], "cancel_requested_by": trail.fields["cancelled_by"],
           "resumed_from_run_id": uuid.UUID(int=1), "config_hash": config_hash(CONFIG), "config": CONFIG}
    row.update(changes)
    return row


def test_fold_keeps_who_how_steps_and_outcome_at_wire_precision():
    trail = fold(events(uuid.uuid4(), cancelled=True))
    f = trail.fields
    assert (f["status"], f["cancelled_by"], f["error_code"], f["success"]) == ("CANCELLED", "carol", "CANCELLED", False)
    assert (f["trigger"], f["requested_by"], f["resumed_from_run_id"]) == ("retry", "ops", uuid.UUID(int=1))
    assert trail.started_at == to_millis(T0) and trail.started_at.microsecond == 123000
    assert (f["records_read"], f["records_synced"], f["chunks"]) == (500, 500, 5)
    record = trail.record()
    assert [s["chunk"] for s in record["progress"]] == [4, 5]
    assert record["resumedFromChunk"] == 3 and record["configHash"] == config_hash(CONFIG)


def test_duplicates_and_late_progress_change_nothing_but_the_raw_count():
    evts = events(uuid.uuid4())
    once = fold(evts)
    twice = fold(evts + evts)
    assert once.history_fields() == twice.history_fields()
    late = BatchSyncProgress(batch_id=7, run_id=evts[0].run_id, correlation_id="c1", producer="t", chunk=9,
                             records_read=900, records_written=900, elapsed_ms=1, records_per_second=1.0)
    twice.apply(late)
    assert twice.fields["records_synced"] == 500, "a terminal run's synced count is its outcome's"


def test_history_row_equal_to_the_fold_matches_and_each_difference_is_named():
    trail = fold(events(uuid.uuid4()))
    row = dict(trail.history_fields())
    row["started_at"] = T0  # the database keeps microseconds of a time the wire carried to the millisecond
    assert compare_history(trail, row) == []
    row.update(records_synced=499, status="FAILED")
    differences = compare_history(trail, row)
    assert len(differences) == 2 and any(d.startswith("records_synced: log=500 db=499") for d in differences)


def test_runs_record_agrees_and_tampered_config_is_caught():
    trail = fold(events(uuid.uuid4(), cancelled=True))
    assert runs_view(runs_row(trail))["duration_ms"] == 9000
    assert compare_runs(trail, runs_row(trail)) == []
    assert any(d.startswith("config:") for d in compare_runs(trail, runs_row(trail, config={**CONFIG, "x": 1})))
    assert any(d.startswith("cancelled_by:") for d in compare_runs(trail, runs_row(trail, cancel_requested_by="m")))
    assert any(d.startswith("records_synced:") for d in compare_runs(trail, runs_row(trail, records_written=1)))


def test_writer_emits_one_line_per_run_once_and_respects_since():
    early, late = fold(events(uuid.uuid4())), fold(events(uuid.uuid4()))
    late.fields["started_at"] = to_millis(T0 + timedelta(hours=1))
    out = io.StringIO()
    writer = TrailWriter(out, since=T0 + timedelta(minutes=1))
    writer.write(late)
    writer.finish([early, late])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["runId"] for line in lines] == [str(late.run_id)]
    assert late.steps is None and early.steps is None

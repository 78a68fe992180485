"""The committed JSON Schemas and AsyncAPI document match the event models, and a changed model is caught."""

import json
from pathlib import Path

from schemas import events
from schemas.generate import ASYNCAPI_FILE, GENERATED, drift, main, render, write


def test_committed_files_match_the_models() -> None:
    assert drift(GENERATED, render()) == [], "run `python -m schemas.generate` and commit schemas/generated/"
    assert main(["--check"]) == 0


def test_every_event_has_a_camel_case_schema() -> None:
    for event in events.ALL_EVENTS:
        schema = json.loads((GENERATED / f"{event.__name__}.schema.json").read_text())
        assert {"eventId", "eventType", "schemaVersion", "occurredAt", "correlationId", "batchId", "runId",
                "producer"} <= set(schema["properties"])
        assert schema["properties"]["eventType"]["const"] == event.__name__


def test_an_added_field_is_drift() -> None:
    class BatchSyncProgress(events.BatchSyncProgress):
        rows_skipped: int = 0

    changed = tuple(BatchSyncProgress if e is events.BatchSyncProgress else e for e in events.ALL_EVENTS)
    assert drift(GENERATED, render(changed)) == ["BatchSyncProgress.schema.json"]
    assert "rowsSkipped" in render(changed)["BatchSyncProgress.schema.json"]


def test_removed_and_renamed_events_are_drift(tmp_path: Path) -> None:
    write(tmp_path, render())
    assert drift(tmp_path, render()) == []
    fewer = tuple(e for e in events.ALL_EVENTS if e is not events.BatchSyncStarted)
    assert drift(tmp_path, render(fewer)) == ["BatchSyncStarted.schema.json", ASYNCAPI_FILE]
    (tmp_path / ASYNCAPI_FILE).write_text("asyncapi: 3.0.0\n")
    assert drift(tmp_path, render()) == [ASYNCAPI_FILE]


def test_generation_is_deterministic() -> None:
    assert render() == render()

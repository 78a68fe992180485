"""The fold table is the one place an event's effect on history is written: an event type registered
there alone is projected by the SQL upsert and replayed by the audit trail, identically."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
from sqlalchemy import select

from schemas.events import BatchSyncCompleted, BatchSyncProgress, BatchSyncStarted, ErrorCode, Event, Trigger
from service.audit.compare import compare_history
from service.audit.trail import RunTrail, to_millis
from service.db.engine import make_engine, make_sessionmaker
from service.db.models import RunHistory
from service.history import folds
from service.history.folds import Fold, Merge, Rule
from service.history.projection import project

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


class BatchSyncChunkRetried(Event):
    """A test-only event: a chunk failed and is tried again."""

    event_type: Literal["BatchSyncChunkRetried"] = "BatchSyncChunkRetried"
    chunk: int
    reason: str
    retried_at: datetime


CHUNK_RETRIED: Fold[BatchSyncChunkRetried] = Fold(
    history={
        **folds.every_event(),
        "status": Rule(Merge.WHILE_OPEN, lambda _e: "RUNNING"),
        "chunks": Rule(Merge.HIGHEST, lambda e: e.chunk),
        "message": Rule(Merge.WHILE_OPEN, lambda e: f"chunk {e.chunk}: {e.reason}"),
        "started_at": Rule(Merge.LOWEST, lambda e: e.retried_at),
    },
)


@pytest.fixture
def chunk_retried_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(folds.FOLDS, BatchSyncChunkRetried, CHUNK_RETRIED)


@pytest.fixture
async def sessions(state_dsn: str) -> Any:
    engine = make_engine(state_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    yield make_sessionmaker(engine)
    await engine.dispose()


def run_log(run_id: uuid.UUID) -> list[Event]:
    """A run told out of order and twice over, with retries before it starts, while it runs and after
    its outcome (which must not reopen it)."""
    common = {"batch_id": 77, "run_id": run_id, "correlation_id": f"c-{run_id}", "producer": "test"}
    retried = [BatchSyncChunkRetried(**common, chunk=n, reason=f"timeout {n}", retried_at=T0 + timedelta(seconds=n),
                                     occurred_at=T0 + timedelta(seconds=n)) for n in (1, 3, 9)]
    started = BatchSyncStarted(**common, trigger=Trigger.HTTP, requested_by="ana", started_at=T0 + timedelta(seconds=2),
                               config_hash="h", occurred_at=T0 + timedelta(seconds=2))
    progress = BatchSyncProgress(**common, chunk=4, records_read=40, records_written=40, elapsed_ms=4,
                                 records_per_second=1.0, occurred_at=T0 + timedelta(seconds=4))
    completed = BatchSyncCompleted(**common, success=False, message="同步失败", sync_time=T0 + timedelta(seconds=5),
                                   records_synced=30, duration_ms=3000, error_code=ErrorCode.TARGET_ERROR,
                                   occurred_at=T0 + timedelta(seconds=5))
    return [retried[1], started, retried[0], progress, completed, retried[2], retried[1]]


def trail_of(log: list[Event]) -> RunTrail:
    trail = RunTrail(log[0].run_id or uuid.uuid4(), keep_steps=False)
    seen: set[uuid.UUID] = set()
    for event in log:
        if event.event_id not in seen:  # the projector folds each eventId once; so does this
            seen.add(event.event_id)
            trail.apply(event)  # type: ignore[arg-type]
    return trail


@pytest.mark.usefixtures("chunk_retried_folds")
async def test_an_event_added_to_the_fold_table_alone_is_projected_and_replayed_identically(sessions: Any) -> None:
    run_id = uuid.uuid4()
    log = run_log(run_id)
    async with sessions.begin() as session:
        for event in log:
            await project(session, event)
    async with sessions() as session:
        row = (await session.execute(select(RunHistory).where(RunHistory.run_id == run_id))).scalar_one()
    projected = {name: getattr(row, name) for name in folds.HISTORY_COLUMNS}
    trail = trail_of(log)

    assert compare_history(trail, projected) == []
    replayed = {name: trail.fields[name] for name in folds.HISTORY_COLUMNS}
    assert {k: to_millis(v) if isinstance(v, datetime) else v for k, v in projected.items()} == replayed
    assert (row.status, row.chunks, row.message, row.started_at, row.events) == (
        "FAILED", 9, "同步失败", T0 + timedelta(seconds=1), 6), "a retry after the outcome does not reopen the run"


def test_every_lifecycle_event_has_a_fold_and_a_gap_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    folds.check_table()
    monkeypatch.delitem(folds.FOLDS, BatchSyncProgress)
    with pytest.raises(TypeError, match="no fold for BatchSyncProgress"):
        folds.check_table()


def test_a_fold_into_a_column_run_history_lacks_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(folds.FOLDS, BatchSyncChunkRetried, Fold(
        history={**CHUNK_RETRIED.history, "retries": Rule(Merge.COUNT, lambda _e: 1)}))
    with pytest.raises(TypeError, match="retries"):
        folds.check_table()


def test_every_rule_has_its_python_and_its_sql() -> None:
    from sqlalchemy import column, literal

    from service.history.projection import merged

    for merge in Merge:
        assert folds.COMBINE[merge](None, 1, True) == 1, "a run without a value takes the event's"
        assert merged(merge, column("old"), column("new"), literal(True)) is not None

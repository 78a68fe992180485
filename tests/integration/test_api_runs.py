"""History, statistics and run detail from hand-inserted projection and run rows; the sync, retry and
cancel routes wired to a stand-in for `service.runs.requests`."""

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import service.runs.requests
from schemas.events import BatchSyncCompleted
from service.runs.outcomes import Accepted, AlreadyRunning, CancelRequested, Finished, NothingToCancel
from service.runs.outcomes import BatchNotFound as NoBatch
from tests.support.api import (
    api_client,
    api_settings,
    asyncpg_url,
    bearer,
    create_batch,
    create_connection,
)
from tests.support.databases import migrated_database

T0 = datetime(2026, 1, 9, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn), sync_wait_seconds=42)) as client:
        yield client


@pytest.fixture(scope="module")
async def pair(client) -> tuple[int, int]:
    return (await create_connection(client))["id"], (await create_connection(client))["id"]


async def insert_history(dsn: str, batch_id: int, rows: list[dict]) -> list[uuid.UUID]:
    """Rows as the projector writes them; each dict overrides the defaults of a successful run."""
    conn = await asyncpg.connect(dsn)
    ids = []
    try:
        for offset, row in enumerate(rows):
            values = {"run_id": uuid.uuid4(), "batch_id": batch_id, "trigger": "http", "requested_by": "alice",
                      "status": "SUCCESS", "started_at": T0 + timedelta(minutes=offset),
                      "finished_at": T0 + timedelta(minutes=offset, seconds=30), "records_synced": 0,
                      "duration_ms": None, "message": None} | row
            columns = ", ".join(values)
            marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
            await conn.execute(f"INSERT INTO run_history ({columns}) VALUES ({marks})", *values.values())
            ids.append(values["run_id"])
    finally:
        await conn.close()
    return ids


async def test_history_is_newest_first_and_paginated(client, pair, state_dsn) -> None:
    batch = await create_batch(client, *pair)
    old, failed, running = await insert_history(state_dsn, batch["id"], [
        {"records_synced": 10, "message": "同步成功"},
        {"status": "FAILED", "records_synced": 0, "message": "连接超时", "trigger": "retry"},
        {"status": "RUNNING", "finished_at": None, "requested_by": None},
    ])

    page = (await client.get(f"/integration/batch/{batch['id']}/history")).json()["data"]

    assert page["total"] == 3
    assert [r["runId"] for r in page["rows"]] == [str(running), str(failed), str(old)]
    assert page["rows"][1] == {"runId": str(failed), "trigger": "retry", "requestedBy": "alice", "status": "FAILED",
                               "startedAt": "2026-01-09T10:01:00.000Z", "finishedAt": "2026-01-09T10:01:30.000Z",
                               "recordsSynced": 0, "message": "连接超时", "resumedFromRunId": None,
                               "retriedByRunId": None, "retryAttempt": None, "skippedFires": 0,
                               "lastSkippedFireAt": None, "recordsRejected": 0, "sourceCount": None,
                               "targetCount": None, "reconciled": None}
    assert page["rows"][0]["finishedAt"] is None and page["rows"][0]["requestedBy"] == ""
    second = (await client.get(f"/integration/batch/{batch['id']}/history",
                               params={"pageNum": 2, "pageSize": 2})).json()["data"]
    assert second["total"] == 3 and [r["runId"] for r in second["rows"]] == [str(old)]


async def test_history_of_unknown_batch_is_404(client) -> None:
    response = await client.get("/integration/batch/987654/history")
    assert response.json() == {"code": 404, "message": "批次不存在", "data": None}


async def test_batch_statistics_math(client, pair, state_dsn) -> None:
    batch = await create_batch(client, *pair)
    await insert_history(state_dsn, batch["id"], [
        {"records_synced": 100, "duration_ms": 1000, "records_rejected": 3},
        {"status": "FAILED", "records_synced": 5, "duration_ms": 500, "records_rejected": 11},
        {"records_synced": 200, "duration_ms": 2000},
        {"status": "RUNNING", "finished_at": None, "records_synced": 7},
    ])

    stats = (await client.get(f"/integration/batch/{batch['id']}/statistics")).json()["data"]

    assert stats == {
        "batchId": batch["id"], "totalRuns": 4, "successRuns": 2, "failedRuns": 1, "successRate": 0.5,
        "totalRecordsSynced": 312, "lastRecordsSynced": 200, "lastSyncTime": "2026-01-09T10:02:30.000Z",
        "lastSuccessTime": "2026-01-09T10:02:30.000Z", "avgDurationMs": 1166.7, "totalRecordsRejected": 14,
    }


async def test_success_rate_is_rounded_to_four_places(client, pair, state_dsn) -> None:
    batch = await create_batch(client, *pair)
    await insert_history(state_dsn, batch["id"], [{}, {"status": "FAILED"}, {"status": "FAILED"}])
    stats = (await client.get(f"/integration/batch/{batch['id']}/statistics")).json()["data"]
    assert stats["successRate"] == 0.3333 and stats["lastSuccessTime"] == "2026-01-09T10:00:30.000Z"


async def test_statistics_of_a_batch_without_runs(client, pair) -> None:
    batch = await create_batch(client, *pair)
    stats = (await client.get(f"/integration/batch/{batch['id']}/statistics")).json()["data"]
    assert stats == {"batchId": batch["id"], "totalRuns": 0, "successRuns": 0, "failedRuns": 0, "successRate": 0,
                     "totalRecordsSynced": 0, "lastRecordsSynced": None, "lastSyncTime": None,
                     "lastSuccessTime": None, "avgDurationMs": None, "totalRecordsRejected": 0}
    missing = await client.get("/integration/batch/987654/statistics")
    assert missing.status_code == 404


@pytest.fixture(scope="module")
def empty_state_dsn():
    with migrated_database("bs_api_stats") as dsn:
        yield dsn


async def test_overall_statistics_count_by_status_and_mode(empty_state_dsn) -> None:
    async with api_client(api_settings(asyncpg_url(empty_state_dsn))) as client:
        empty = (await client.get("/integration/batch/statistics")).json()["data"]
        assert empty["totalBatches"] == 0 and empty["successRate"] == 0 and empty["batchesByStatus"] == {}

        src, tgt = (await create_connection(client))["id"], (await create_connection(client))["id"]
        first = await create_batch(client, src, tgt)
        second = await create_batch(client, src, tgt, target={"table": "t", "mode": "upsert", "keyColumns": ["id"]})
        await create_batch(client, src, tgt)
        conn = await asyncpg.connect(empty_state_dsn)
        try:
            await conn.execute("UPDATE batches SET status = 'SUCCESS' WHERE id = $1", first["id"])
        finally:
            await conn.close()
        await insert_history(empty_state_dsn, first["id"], [{"records_synced": 3, "duration_ms": 10}])
        await insert_history(empty_state_dsn, second["id"], [{"status": "FAILED", "duration_ms": 30}, {}])

        stats = (await client.get("/integration/batch/statistics")).json()["data"]

    assert stats == {
        "totalBatches": 3, "totalRuns": 3, "successRuns": 2, "failedRuns": 1, "successRate": 0.6667,
        "totalRecordsSynced": 3, "lastSyncTime": "2026-01-09T10:01:30.000Z",
        "lastSuccessTime": "2026-01-09T10:01:30.000Z", "avgDurationMs": 20.0,
        "batchesByStatus": {"NEVER_RUN": 2, "SUCCESS": 1}, "batchesByMode": {"append": 2, "upsert": 1},
        "totalRecordsRejected": 0,
    }


async def test_run_detail_shows_live_progress(client, pair, state_dsn) -> None:
    batch, other = await create_batch(client, *pair), await create_batch(client, *pair)
    run_id = uuid.uuid4()
    conn = await asyncpg.connect(state_dsn)
    try:
        await conn.execute(
            "INSERT INTO runs (id, batch_id, request_id, correlation_id, trigger, requested_by, status, "
            "checkpoint_key, records_read, records_written, chunks, total_estimate, started_at, message) "
            "VALUES ($1, $2, $3, 'c', 'http', 'alice', 'RUNNING', $1, 2500, 2000, 2, 10000, $4, NULL)",
            run_id, batch["id"], str(run_id), T0)
    finally:
        await conn.close()

    response = await client.get(f"/integration/batch/{batch['id']}/runs/{run_id}")

    data = response.json()["data"]
    assert response.status_code == 200
    assert {k: data[k] for k in ("runId", "status", "recordsRead", "recordsWritten", "chunks", "totalEstimate",
                                 "startedAt", "finishedAt", "message")} == {
        "runId": str(run_id), "status": "RUNNING", "recordsRead": 2500, "recordsWritten": 2000, "chunks": 2,
        "totalEstimate": 10000, "startedAt": "2026-01-09T10:00:00.000Z", "finishedAt": None, "message": None}
    elsewhere = f"/integration/batch/{other['id']}/runs/{run_id}"
    unknown = f"/integration/batch/{batch['id']}/runs/{uuid.uuid4()}"
    for path in (elsewhere, unknown):
        missing = await client.get(path)
        assert missing.status_code == 404 and missing.json()["message"] == "运行记录不存在"
    bad = await client.get(f"/integration/batch/{batch['id']}/runs/not-a-uuid")
    assert bad.status_code == 400 and bad.json()["message"].startswith("参数错误：runId：")


class RunRequests:
    """Stands in for `service.runs.requests`, recording how the routes call it."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.sync_outcome = None
        self.cancel_outcome = None

    async def request_sync(self, state, batch_id, requested_by, wait):
        self.calls.append(("sync", state.settings.sync_wait_seconds, batch_id, requested_by, wait))
        return self.sync_outcome

    async def request_retry(self, state, batch_id, requested_by, wait):
        self.calls.append(("retry", batch_id, requested_by, wait))
        return self.sync_outcome

    async def request_cancel(self, state, batch_id, requested_by):
        self.calls.append(("cancel", batch_id, requested_by))
        return self.cancel_outcome


@pytest.fixture
def run_requests(monkeypatch) -> RunRequests:
    fake = RunRequests()
    for name in ("request_sync", "request_retry", "request_cancel"):
        monkeypatch.setattr(service.runs.requests, name, getattr(fake, name))
    return fake


async def test_sync_route_passes_the_caller_and_the_default_wait(client, run_requests) -> None:
    run_id = uuid.uuid4()
    run_requests.sync_outcome = Finished(BatchSyncCompleted(
        correlation_id="c", batch_id=5, run_id=run_id, producer="p", success=True, message="ok",
        sync_time=T0, records_synced=1000))

    response = await client.post("/integration/batch/5/sync", headers=bearer(["integration:batch:sync"], "bob"))

    assert run_requests.calls == [("sync", 42, 5, "bob", 42)]
    assert response.status_code == 200
    assert response.json() == {"code": 200, "message": "操作成功", "data": {
        "success": True, "batchId": 5, "message": "同步成功", "syncTime": "2026-01-09T10:00:00.000Z",
        "recordsSynced": 1000, "runId": str(run_id)}}


async def test_sync_route_wait_parameter(client, run_requests) -> None:
    run_requests.sync_outcome = Accepted(5, uuid.uuid4())
    response = await client.post("/integration/batch/5/sync", params={"wait": 0})
    assert response.status_code == 202 and response.json()["message"] == "同步已在后台执行"
    await client.post("/integration/batch/5/sync", params={"wait": 2.5})
    assert [call[-1] for call in run_requests.calls] == [0, 2.5]
    for bad in ("-1", "3601", "abc", "nan"):
        response = await client.post("/integration/batch/5/sync", params={"wait": bad})
        assert response.status_code == 400 and response.json()["message"].startswith("参数错误：wait："), bad
    assert len(run_requests.calls) == 2


async def test_retry_and_cancel_routes(client, run_requests) -> None:
    run_id = uuid.uuid4()
    run_requests.sync_outcome = AlreadyRunning(5, run_id)
    response = await client.post("/integration/batch/5/retry", params={"wait": 1},
                                 headers=bearer(["integration:batch:retry"], "carol"))
    assert response.status_code == 409
    assert response.json() == {"code": 409, "message": "批次正在同步中", "data": {"batchId": 5, "runId": str(run_id)}}

    run_requests.cancel_outcome = CancelRequested(5, run_id)
    response = await client.post("/integration/batch/5/cancel", headers=bearer(["integration:batch:sync"], "dave"))
    assert response.json() == {"code": 200, "message": "操作成功", "data": {"batchId": 5, "runId": str(run_id)}}
    run_requests.cancel_outcome = NothingToCancel(5)
    assert (await client.post("/integration/batch/5/cancel")).status_code == 400
    run_requests.cancel_outcome = NoBatch(5)
    assert (await client.post("/integration/batch/5/cancel")).status_code == 404
    assert run_requests.calls[:2] == [("retry", 5, "carol", 1), ("cancel", 5, "dave")]


@pytest.mark.parametrize(("path", "perm"), [
    ("/integration/batch/5/sync", "integration:batch:retry"),
    ("/integration/batch/5/retry", "integration:batch:sync"),
    ("/integration/batch/5/cancel", "integration:batch:retry"),
])
async def test_run_routes_need_their_permission(client, run_requests, path: str, perm: str) -> None:
    response = await client.post(path, headers=bearer([perm]))
    assert response.status_code == 403
    assert response.json()["message"] == "无权限执行此操作"
    assert response.json()["data"]["permission"] == ("integration:batch:retry" if path.endswith("/retry")
                                                     else "integration:batch:sync")
    assert run_requests.calls == []

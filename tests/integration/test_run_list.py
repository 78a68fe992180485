"""`GET /integration/run/list`: runs across batches, newest first, filtered by status (the console's failures)."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.support.api import api_client, api_settings, asyncpg_url, bearer, create_batch, create_connection
from tests.support.databases import migrated_database

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
EXPECTED_KEYS = ("runId", "batchId", "batchName", "trigger", "requestedBy", "status", "startedAt", "finishedAt",
                 "recordsSynced", "message", "errorCode")


@pytest.fixture(scope="module")
def own_dsn() -> Iterator[str]:
    """A state store of its own: the list spans every batch, so the shared one's runs would be counted."""
    with migrated_database("bs_runlist") as dsn:
        yield dsn


@pytest.fixture(scope="module")
async def client(own_dsn):
    async with api_client(api_settings(asyncpg_url(own_dsn))) as client:
        yield client


async def insert_runs(dsn: str, rows: list[dict]) -> list[uuid.UUID]:
    conn = await asyncpg.connect(dsn)
    try:
        ids = []
        for minute, row in enumerate(rows):
            values = {"run_id": uuid.uuid4(), "trigger": "http", "requested_by": "alice", "status": "SUCCESS",
                      "started_at": T0 + timedelta(minutes=minute),
                      "finished_at": T0 + timedelta(minutes=minute, seconds=20), "records_synced": 5,
                      "message": "同步成功", "error_code": None} | row
            marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
            await conn.execute(f"INSERT INTO run_history ({', '.join(values)}) VALUES ({marks})", *values.values())
            ids.append(values["run_id"])
        return ids
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def runs(client, own_dsn) -> dict:
    source, target = (await create_connection(client))["id"], (await create_connection(client))["id"]
    first = await create_batch(client, source, target, name="orders <b>nightly</b>")
    second = await create_batch(client, source, target, name="customers")
    ids = await insert_runs(own_dsn, [
        {"batch_id": first["id"], "status": "FAILED", "message": "同步失败：连接超时", "error_code": "SOURCE_TIMEOUT"},
        {"batch_id": second["id"]},
        {"batch_id": second["id"], "status": "FAILED", "message": "源表不存在：customers",
         "error_code": "SOURCE_NOT_FOUND"},
        {"batch_id": 999_999, "status": "FAILED", "message": "gone", "error_code": "TARGET_ERROR"},
        {"batch_id": first["id"], "status": "RUNNING", "finished_at": None},
    ])
    return {"first": first, "second": second, "ids": ids}


async def test_failed_runs_across_batches_newest_first_with_their_batch_and_message(client, runs) -> None:
    response = await client.get("/integration/run/list", params={"status": "FAILED"})

    assert response.status_code == 200, response.text
    page = response.json()["data"]
    assert page["total"] == 3
    assert [row["runId"] for row in page["rows"]] == [str(runs["ids"][3]), str(runs["ids"][2]), str(runs["ids"][0])]
    deleted, missing_table, timeout = page["rows"]
    assert {key: missing_table[key] for key in EXPECTED_KEYS} == {
        "runId": str(runs["ids"][2]), "batchId": runs["second"]["id"], "batchName": "customers", "trigger": "http",
        "requestedBy": "alice", "status": "FAILED", "startedAt": "2026-03-01T08:02:00.000Z",
        "finishedAt": "2026-03-01T08:02:20.000Z", "recordsSynced": 5, "message": "源表不存在：customers",
        "errorCode": "SOURCE_NOT_FOUND",
    }
    assert timeout["batchName"] == "orders <b>nightly</b>" and timeout["errorCode"] == "SOURCE_TIMEOUT"
    assert deleted["batchId"] == 999_999 and deleted["batchName"] is None, "a deleted batch's runs keep their row"


async def test_without_a_status_every_run_is_listed_and_paged(client, runs) -> None:
    first = (await client.get("/integration/run/list", params={"pageSize": 2})).json()["data"]
    second = (await client.get("/integration/run/list", params={"pageSize": 2, "pageNum": 2})).json()["data"]
    third = (await client.get("/integration/run/list", params={"pageSize": 2, "pageNum": 3})).json()["data"]

    assert first["total"] == 5
    listed = [row["runId"] for page in (first, second, third) for row in page["rows"]]
    assert sorted(listed) == sorted(map(str, runs["ids"])) and len(set(listed)) == 5
    assert listed[0] == str(runs["ids"][4]), "an unfinished run sorts by its start, here the newest"


@pytest.mark.parametrize("params", [{"status": "BROKEN"}, {"status": "NEVER_RUN"}, {"pageSize": 0},
                                    {"pageNum": "x"}])
async def test_bad_filters_are_400(client, params) -> None:
    response = await client.get("/integration/run/list", params=params)
    assert response.status_code == 400 and response.json()["message"].startswith("参数错误：")


async def test_the_list_needs_the_batch_list_permission(client) -> None:
    no_token = await client.get("/integration/run/list", headers={"Authorization": ""})
    query_only = await client.get("/integration/run/list", headers=bearer(["integration:batch:query"]))
    allowed = await client.get("/integration/run/list", headers=bearer(["integration:batch:list"]))
    assert (no_token.status_code, query_only.status_code, allowed.status_code) == (401, 403, 200)

"""The seed's three cases and the sync endpoint's other answers, end to end on real services:
HTTP → Kafka request → worker → PostgreSQL source → PostgreSQL target → outbox → reply → HTTP."""

import asyncio
import time

import asyncpg
import pytest

from tests.support.builders import create_empty_like_orders, create_orders, table_fingerprint, unique
from tests.support.loopback import silent_server
from tests.support.stack import SOLO, create_batch, create_connection, running_stack, stack_settings, wait_for_run


@pytest.fixture(scope="module")
async def stack(state_dsn, broker):
    async with running_stack(stack_settings(state_dsn, broker.bootstrap, **SOLO)) as running:
        yield running


@pytest.fixture(scope="module")
async def connections(stack, source_dsn, target_dsn):
    return (
        await create_connection(stack, unique("src"), source_dsn),
        await create_connection(stack, unique("tgt"), target_dsn),
    )


async def make_batch(stack, connections, source_dsn, target_dsn, rows: int, mode: str = "append", **extra):
    table = unique("orders")
    await create_orders(source_dsn, table, rows)
    await create_empty_like_orders(target_dsn, table)
    target = {"table": table, "mode": mode}
    if mode == "upsert":
        target["keyColumns"] = ["id"]
    batch_id = await create_batch(stack, unique("batch"), *connections, {"table": table}, target, **extra)
    return batch_id, table


async def test_sync_existing_batch_answers_200_and_target_equals_source(stack, connections, source_dsn, target_dsn):
    batch_id, table = await make_batch(stack, connections, source_dsn, target_dsn, 2500, chunkSize=1000)

    response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 200 and body["message"] == "操作成功"
    data = body["data"]
    assert data["success"] is True
    assert data["batchId"] == batch_id
    assert data["message"] == "同步成功"
    assert data["recordsSynced"] == 2500
    assert data["syncTime"].endswith("Z") and data["runId"]
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)

    detail = (await stack.client.get(f"/integration/batch/{batch_id}", headers=stack.headers())).json()["data"]
    assert detail["status"] == "SUCCESS"
    assert detail["lastRecordsSynced"] == 2500
    assert detail["lastRunId"] == data["runId"]


async def test_sync_missing_batch_answers_404_envelope(stack):
    response = await stack.client.post("/integration/batch/999999/sync", headers=stack.headers())
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "批次不存在", "data": None}


async def test_unreachable_source_fails_with_connect_timeout_within_the_timeout(stack, connections, target_dsn):
    table = unique("orders")
    await create_empty_like_orders(target_dsn, table)
    with silent_server() as port:
        response = await stack.client.post(
            "/integration/connection", headers=stack.headers(),
            json={"name": unique("dead"), "type": "postgresql", "url": f"postgresql://u:secret@127.0.0.1:{port}/db"},
        )
        dead_id = response.json()["data"]["id"]
        batch_id = await create_batch(stack, unique("batch"), dead_id, connections[1], {"table": table},
                                      {"table": table, "mode": "append"})
        started = time.monotonic()
        response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
        elapsed = time.monotonic() - started

    assert response.status_code == 400, response.text
    assert response.json() == {"code": 400, "message": "同步失败：连接超时", "data": None}
    timeout = stack.settings.connect_timeout_seconds
    assert elapsed < timeout * 2 + 3, f"took {elapsed:.1f}s for a {timeout}s connect timeout"
    detail = (await stack.client.get(f"/integration/batch/{batch_id}", headers=stack.headers())).json()["data"]
    assert detail["status"] == "FAILED" and detail["lastError"] == "连接超时"


async def test_wait_zero_answers_202_and_the_run_can_be_polled(stack, connections, source_dsn, target_dsn):
    batch_id, table = await make_batch(stack, connections, source_dsn, target_dsn, 3000, chunkSize=500)

    response = await stack.client.post(f"/integration/batch/{batch_id}/sync?wait=0", headers=stack.headers())

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["message"] == "同步已在后台执行"
    assert body["data"]["batchId"] == batch_id and body["data"]["status"] == "RUNNING"
    run = await wait_for_run(stack, batch_id, body["data"]["runId"])
    assert run["status"] == "SUCCESS"
    assert run["recordsWritten"] == 3000 and run["chunks"] == 6
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)


async def test_concurrent_sync_of_the_same_batch_answers_409(stack, connections, source_dsn, target_dsn):
    batch_id, _ = await make_batch(stack, connections, source_dsn, target_dsn, 20000, chunkSize=500)
    first = await stack.client.post(f"/integration/batch/{batch_id}/sync?wait=0", headers=stack.headers())
    assert first.status_code == 202
    second = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())

    assert second.status_code == 409
    assert second.json()["message"] == "批次正在同步中"
    assert second.json()["data"]["runId"] == first.json()["data"]["runId"]
    await wait_for_run(stack, batch_id, first.json()["data"]["runId"])


async def test_two_simultaneous_requests_start_exactly_one_run(stack, connections, source_dsn, target_dsn, state_dsn):
    batch_id, table = await make_batch(stack, connections, source_dsn, target_dsn, 5000, chunkSize=1000)
    answers = await asyncio.gather(*[
        stack.client.post(f"/integration/batch/{batch_id}/sync?wait=0", headers=stack.headers()) for _ in range(5)
    ])
    codes = sorted(a.status_code for a in answers)
    assert codes == [202, 409, 409, 409, 409]
    run_id = next(a.json()["data"]["runId"] for a in answers if a.status_code == 202)
    await wait_for_run(stack, batch_id, run_id)
    assert (await table_fingerprint(target_dsn, table))[0] == 5000
    conn = await asyncpg.connect(state_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM runs WHERE batch_id = $1", batch_id) == 1
    finally:
        await conn.close()


@pytest.mark.parametrize("mode", ["overwrite", "upsert"])
async def test_repeated_syncs_keep_the_target_equal_to_the_source(stack, connections, source_dsn, target_dsn, mode):
    batch_id, table = await make_batch(stack, connections, source_dsn, target_dsn, 1200, mode=mode, chunkSize=500)
    for _ in range(2):
        response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
        assert response.status_code == 200, response.text
        assert response.json()["data"]["recordsSynced"] == 1200
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)


async def test_sync_needs_a_token_and_the_permission(stack, connections, source_dsn, target_dsn):
    batch_id, _ = await make_batch(stack, connections, source_dsn, target_dsn, 1)
    anonymous = await stack.client.post(f"/integration/batch/{batch_id}/sync")
    assert anonymous.status_code == 401
    assert anonymous.json() == {"code": 401, "message": "认证失败，无法访问系统资源",
                                "data": {"reason": "missing", "description": "no bearer token was sent"}}
    reader = await stack.client.post(f"/integration/batch/{batch_id}/sync",
                                     headers=stack.headers(["integration:batch:query"]))
    assert reader.status_code == 403
    assert reader.json()["code"] == 403 and reader.json()["message"] == "无权限执行此操作"
    assert reader.json()["data"]["permission"] == "integration:batch:sync"


async def test_history_and_statistics_follow_the_runs(stack, connections, source_dsn, target_dsn):
    batch_id, _ = await make_batch(stack, connections, source_dsn, target_dsn, 100, mode="overwrite")
    for _ in range(2):
        response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
        assert response.status_code == 200, response.text

    async def projected() -> dict:
        for _ in range(100):
            history = (await stack.client.get(f"/integration/batch/{batch_id}/history",
                                              headers=stack.headers())).json()["data"]
            if history["total"] == 2 and all(r["status"] == "SUCCESS" for r in history["rows"]):
                return history
            await asyncio.sleep(0.1)
        raise AssertionError(f"history not projected: {history}")

    history = await projected()
    assert [r["recordsSynced"] for r in history["rows"]] == [100, 100]
    assert history["rows"][0]["requestedBy"] == "tester" and history["rows"][0]["trigger"] == "http"
    stats = (await stack.client.get(f"/integration/batch/{batch_id}/statistics", headers=stack.headers())).json()
    assert stats["data"]["totalRuns"] == 2 and stats["data"]["successRuns"] == 2
    assert stats["data"]["successRate"] == 1 and stats["data"]["totalRecordsSynced"] == 200

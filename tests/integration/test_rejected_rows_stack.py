"""errorLimit end to end on the real stack (HTTP → broker → worker → PostgreSQL → outbox → reply): a CSV with
5 bad values among 1,000 rows, strict (400 naming the value) and lenient (995 written; 5 signed
BatchRowRejected on P.rejected; recordsRejected in the run, history and statistics), and beyond the limit."""

import asyncio
import json
from pathlib import Path

import pytest

from tests.integration.test_rejected_rows import BAD_LINES, write_orders
from tests.support.builders import unique
from tests.support.signing import read_records, signed_by
from tests.support.stack import SOLO, create_batch, create_connection, running_stack, stack_settings

COLUMNS = "id bigint PRIMARY KEY, name text, qty integer"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rejects")
    write_orders(folder / "orders.csv")
    return folder


@pytest.fixture(scope="module")
async def stack(state_dsn, broker, files):
    async with running_stack(stack_settings(state_dsn, broker.bootstrap, file_roots=str(files), **SOLO)) as running:
        yield running


async def make_batch(stack, files: Path, target_dsn: str, **extra) -> tuple[int, str]:
    import asyncpg

    table = unique("orders")
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(f"CREATE TABLE {table} ({COLUMNS})")
    finally:
        await conn.close()
    response = await stack.client.post("/integration/connection", headers=stack.headers(), json={
        "name": unique("csv"), "type": "csv", "params": {"path": str(files)}})
    assert response.status_code == 200, response.text
    source = int(response.json()["data"]["id"])
    target = await create_connection(stack, unique("tgt"), target_dsn)
    batch_id = await create_batch(stack, unique("batch"), source, target, {"table": "orders"},
                                  {"table": table, "mode": "append"}, chunkSize=300, **extra)
    return batch_id, table


async def sync(stack, batch_id: int) -> tuple[int, dict]:
    response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
    return response.status_code, response.json()


async def projected(stack, batch_id: int) -> dict:
    for _ in range(100):
        rows = (await stack.client.get(f"/integration/batch/{batch_id}/history",
                                       headers=stack.headers())).json()["data"]["rows"]
        if rows and rows[0]["status"] != "RUNNING" and rows[0]["recordsRejected"]:
            return rows[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"history not projected: {rows}")


async def test_without_error_limit_a_bad_value_fails_the_run(stack, files, target_dsn):
    batch_id, _ = await make_batch(stack, files, target_dsn)

    status, body = await sync(stack, batch_id)

    assert status == 400 and body["message"].startswith("同步失败：")
    assert "x17" in body["message"] or "integer" in body["message"], body


async def test_within_the_limit_995_rows_are_written_and_5_rejected(stack, files, target_dsn):
    batch_id, table = await make_batch(stack, files, target_dsn, errorLimit={"records": 10})
    detail = (await stack.client.get(f"/integration/batch/{batch_id}", headers=stack.headers())).json()["data"]
    assert detail["errorLimit"] == {"records": 10, "ratio": None}

    status, body = await sync(stack, batch_id)

    assert status == 200, body
    assert body["data"]["recordsSynced"] == 995
    run_id = body["data"]["runId"]
    run = (await stack.client.get(f"/integration/batch/{batch_id}/runs/{run_id}", headers=stack.headers())).json()
    assert (run["data"]["recordsRead"], run["data"]["recordsWritten"], run["data"]["recordsRejected"]) == (1000, 995, 5)
    assert (await projected(stack, batch_id))["recordsRejected"] == 5
    stats = (await stack.client.get(f"/integration/batch/{batch_id}/statistics", headers=stack.headers())).json()
    assert stats["data"]["totalRecordsRejected"] == 5

    records = [r for r in await read_records(stack.settings.kafka_bootstrap, stack.settings.topics.rejected, 5)
               if r.key == str(batch_id).encode()]
    events = [json.loads(r.value) for r in records]
    assert sorted(int(e["row"]["id"]) for e in events) == sorted(BAD_LINES)
    assert all(e["eventType"] == "BatchRowRejected" and e["runId"] == run_id and "integer" in e["reason"]
               for e in events)
    assert all(signed_by(stack.settings, r) for r in records)

    completed = [json.loads(r.value) for r in await read_records(stack.settings.kafka_bootstrap,
                                                                   stack.settings.topics.events, 1)]
    mine = [e for e in completed if e["eventType"] == "BatchSyncCompleted" and e["runId"] == run_id]
    assert mine and mine[0]["recordsRejected"] == 5


async def test_beyond_the_limit_the_run_fails_saying_how_many_and_why(stack, files, target_dsn):
    batch_id, _ = await make_batch(stack, files, target_dsn, errorLimit={"records": 2})

    status, body = await sync(stack, batch_id)

    assert status == 400
    assert "拒绝的记录数超出限制：已拒绝 3 行（上限 2 行）" in body["message"] and "integer" in body["message"]


async def test_an_empty_error_limit_is_refused(stack, files, target_dsn):
    response = await stack.client.post("/integration/batch", headers=stack.headers(), json={
        "name": unique("b"), "sourceConnectionId": 1, "source": {"table": "x"}, "targetConnectionId": 1,
        "target": {"table": "x", "mode": "append"}, "errorLimit": {}})
    assert response.status_code == 400 and "errorLimit" in response.json()["message"]

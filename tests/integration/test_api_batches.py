"""`/integration/batch` on real PostgreSQL: CRUD, validation, filters, pagination, route order."""

import uuid

import asyncpg
import pytest

from tests.support.api import (
    api_client,
    api_settings,
    asyncpg_url,
    batch_body,
    create_batch,
    create_connection,
    unique,
)


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        yield client


@pytest.fixture(scope="module")
async def pair(client) -> tuple[int, int]:
    return (await create_connection(client))["id"], (await create_connection(client))["id"]


async def sql(state_dsn: str, statement: str, *args) -> None:
    conn = await asyncpg.connect(state_dsn)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


async def test_create_and_get_return_the_config_and_never_run_state(client, pair) -> None:
    body = batch_body(*pair, source={"query": "SELECT 1 AS id", "cursorColumn": "id"},
                      target={"table": "public.copy", "mode": "upsert", "keyColumns": ["id"]},
                      mapping=[{"from": "id", "to": "ident", "type": "int"}], chunkSize=500)
    created = (await client.post("/integration/batch", json=body)).json()["data"]

    assert created["name"] == body["name"] and created["chunkSize"] == 500
    assert created["source"] == {"table": None, "query": "SELECT 1 AS id", "cursorColumn": "id"}
    assert created["target"]["keyColumns"] == ["id"] and created["target"]["mode"] == "upsert"
    assert created["mapping"][0]["from"] == "id" and created["mapping"][0]["to"] == "ident"
    assert created["status"] == "NEVER_RUN" and created["configVersion"] == 1
    assert created["lastRunId"] is None and created["lastSyncTime"] is None
    detail = await client.get(f"/integration/batch/{created['id']}")
    assert detail.json() == {"code": 200, "message": "操作成功", "data": created}


async def test_update_bumps_config_version(client, pair) -> None:
    created = await create_batch(client, *pair)
    body = batch_body(*pair, name=created["name"], target={"table": "other", "mode": "overwrite"})

    updated = (await client.put(f"/integration/batch/{created['id']}", json=body)).json()["data"]

    assert updated["configVersion"] == 2 and updated["target"]["mode"] == "overwrite"
    again = (await client.put(f"/integration/batch/{created['id']}", json=body)).json()["data"]
    assert again["configVersion"] == 3


@pytest.mark.parametrize("which", ["sourceConnectionId", "targetConnectionId"])
async def test_unknown_connection_is_400_on_create_and_update(client, pair, which: str) -> None:
    body = batch_body(*pair) | {which: 987654}
    response = await client.post("/integration/batch", json=body)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": "参数错误：连接不存在：987654", "data": None}

    created = await create_batch(client, *pair)
    response = await client.put(f"/integration/batch/{created['id']}", json=body)
    assert response.json()["message"] == "参数错误：连接不存在：987654"


@pytest.mark.parametrize(("change", "field"), [
    ({"source": {"table": "a", "query": "SELECT 1"}}, "source"),
    ({"source": {}}, "source"),
    ({"target": {"table": "t", "mode": "upsert"}}, "target"),
    ({"target": {"table": "bad name;", "mode": "append"}}, "target.table"),
    ({"chunkSize": 0}, "chunkSize"),
    ({"name": ""}, "name"),
])
async def test_invalid_body_is_400_naming_the_field(client, pair, change: dict, field: str) -> None:
    response = await client.post("/integration/batch", json=batch_body(*pair, **change))
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"参数错误：{field}："), response.json()


async def test_missing_field_is_400(client, pair) -> None:
    body = batch_body(*pair)
    del body["targetConnectionId"]
    response = await client.post("/integration/batch", json=body)
    assert response.json()["message"] == "参数错误：targetConnectionId：缺少必填字段"


async def test_list_filters_by_name_and_status_and_paginates(client, pair, state_dsn) -> None:
    prefix = unique("list")
    ids = [(await create_batch(client, *pair, name=f"{prefix}_{i}"))["id"] for i in range(5)]
    await sql(state_dsn, "UPDATE batches SET status = 'FAILED' WHERE id = ANY($1::int[])", ids[1:3])

    everything = (await client.get("/integration/batch/list", params={"name": prefix})).json()["data"]
    assert everything["total"] == 5 and [r["id"] for r in everything["rows"]] == ids
    page = (await client.get("/integration/batch/list",
                             params={"name": prefix, "pageNum": 2, "pageSize": 2})).json()["data"]
    assert page["total"] == 5 and [r["id"] for r in page["rows"]] == ids[2:4]
    failed = (await client.get("/integration/batch/list",
                               params={"name": prefix, "status": "FAILED"})).json()["data"]
    assert failed["total"] == 2 and {r["id"] for r in failed["rows"]} == set(ids[1:3])
    percent = (await client.get("/integration/batch/list", params={"name": "%"})).json()["data"]
    assert all("%" in r["name"] for r in percent["rows"])


@pytest.mark.parametrize(("params", "field"), [
    ({"pageSize": 501}, "pageSize"), ({"pageSize": 0}, "pageSize"), ({"pageNum": 0}, "pageNum"),
    ({"pageNum": "x"}, "pageNum"),
])
async def test_bad_paging_is_400(client, params: dict, field: str) -> None:
    response = await client.get("/integration/batch/list", params=params)
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"参数错误：{field}：")


async def test_max_page_size_is_accepted(client) -> None:
    response = await client.get("/integration/batch/list", params={"pageSize": 500})
    assert response.status_code == 200 and len(response.json()["data"]["rows"]) <= 500


async def test_fixed_paths_are_not_captured_by_id(client) -> None:
    assert (await client.get("/integration/batch/list")).status_code == 200
    assert (await client.get("/integration/batch/statistics")).status_code == 200


async def test_delete_then_404_and_refused_while_a_run_is_active(client, pair, state_dsn) -> None:
    busy = await create_batch(client, *pair)
    run_id = uuid.uuid4()
    await sql(state_dsn, "INSERT INTO runs (id, batch_id, request_id, correlation_id, trigger, requested_by, "
                         "status, checkpoint_key) VALUES ($1, $2, $3, 'c', 'http', 't', 'RUNNING', $1)",
              run_id, busy["id"], str(run_id))
    response = await client.delete(f"/integration/batch/{busy['id']}")
    assert response.status_code == 409
    assert response.json() == {"code": 409, "message": "批次正在同步中", "data": None}

    await sql(state_dsn, "UPDATE runs SET status = 'SUCCESS' WHERE id = $1", run_id)
    assert (await client.delete(f"/integration/batch/{busy['id']}")).json()["code"] == 200
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/integration/batch/{busy['id']}")
        assert response.status_code == 404
        assert response.json() == {"code": 404, "message": "批次不存在", "data": None}
    response = await client.put(f"/integration/batch/{busy['id']}", json=batch_body(*pair))
    assert response.status_code == 404


async def test_a_mode_the_target_kind_cannot_do_is_refused_naming_it(client, pair, state_dsn) -> None:
    from service.connectors.kind import ConnectorKind
    from service.connectors.params import ParamsModel
    from service.connectors.registry import KINDS

    class AppendOnlyParams(ParamsModel):
        kind = "appendonly"

    source_id, sink_id = pair[0], (await create_connection(client))["id"]
    await sql(state_dsn, "UPDATE connections SET type = 'appendonly' WHERE id = $1", sink_id)
    KINDS["appendonly"] = ConnectorKind(params=AppendOnlyParams, target=object, modes=frozenset({"append"}),  # type: ignore[arg-type]
                                        check=KINDS["postgresql"].check)
    try:
        body = batch_body(source_id, sink_id, target={"table": "t", "mode": "upsert", "keyColumns": ["id"]})
        refused = await client.post("/integration/batch", json=body)
        assert refused.status_code == 400
        assert refused.json()["message"] == "参数错误：目标类型 appendonly 不支持 upsert 模式"
        body["target"] = {"table": "t", "mode": "append"}
        assert (await client.post("/integration/batch", json=body)).status_code == 200
        refused = await client.post("/integration/batch", json=batch_body(sink_id, source_id))
        assert refused.json()["message"] == "参数错误：连接类型不能作为源：appendonly"
    finally:
        del KINDS["appendonly"]


async def test_a_cursor_column_on_a_source_without_cursor_support_is_refused(client, pair, state_dsn) -> None:
    files = (await create_connection(client))["id"]
    await sql(state_dsn, "UPDATE connections SET type = 'csv' WHERE id = $1", files)
    refused = await client.post("/integration/batch", json=batch_body(
        files, pair[1], source={"table": "orders", "cursorColumn": "updated_at"}))
    assert refused.status_code == 400
    assert refused.json()["message"] == "参数错误：源类型 csv 不支持增量同步（cursorColumn）"
    accepted = await client.post("/integration/batch", json=batch_body(
        pair[0], pair[1], source={"table": "orders", "cursorColumn": "updated_at"}))
    assert accepted.status_code == 200

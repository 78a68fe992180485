"""`/integration/connection` on real PostgreSQL: CRUD, redaction and secret round trips, the live test."""

import asyncpg
import pytest

from service.catalog.redaction import MASK
from tests.support.api import (
    API_TOKEN,
    DB_PASSWORD,
    api_client,
    api_settings,
    asyncpg_url,
    create_batch,
    create_connection,
    unique,
)


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        yield client


async def stored(state_dsn: str, connection_id: int) -> asyncpg.Record:
    conn = await asyncpg.connect(state_dsn)
    try:
        return await conn.fetchrow("SELECT url, params::text AS params, secrets FROM connections WHERE id = $1",
                                   connection_id)
    finally:
        await conn.close()


async def test_create_get_and_list_never_show_secrets(client, state_dsn) -> None:
    name = unique("api")
    created = await create_connection(client, name=name, type="http", url=f"https://app:{DB_PASSWORD}@api.example/v1",
                                      params={"headers": {"Authorization": API_TOKEN}, "recordsPath": "data"})
    assert created["url"] == f"https://app:{MASK}@api.example/v1"
    assert created["params"] == {"headers": {"Authorization": MASK}, "recordsPath": "data"}
    assert created["options"] == {}
    assert created["createdAt"].endswith("Z") and created["type"] == "http"

    detail = (await client.get(f"/integration/connection/{created['id']}")).json()
    assert detail == {"code": 200, "message": "操作成功", "data": created}

    listed = (await client.get("/integration/connection/list", params={"name": name})).json()["data"]
    assert listed == {"total": 1, "rows": [created]}

    row = await stored(state_dsn, created["id"])
    assert row["url"] == created["url"] and DB_PASSWORD not in row["secrets"] and API_TOKEN not in row["params"]


async def test_update_keeps_masked_secrets_and_replaces_new_ones(client, state_dsn) -> None:
    created = await create_connection(client, type="http", url="https://api.example/v1",
                                      params={"headers": {"X-Token": API_TOKEN}, "timeout": 5})
    body = {"name": created["name"], "type": "http", "url": "https://api.example/v2",
            "params": {"headers": {"X-Token": MASK}, "timeout": 9}}

    response = await client.put(f"/integration/connection/{created['id']}", json=body)

    assert response.status_code == 200, response.text
    assert response.json()["data"]["params"] == {"headers": {"X-Token": MASK}, "timeout": 9}
    assert (await stored(state_dsn, created["id"]))["url"] == "https://api.example/v2"

    body["params"] = {"headers": {"X-Token": "rotated-token"}}
    await client.put(f"/integration/connection/{created['id']}", json=body)
    assert (await client.get(f"/integration/connection/{created['id']}")).json()["data"]["params"] == {
        "headers": {"X-Token": MASK}}


async def test_duplicate_name_is_409(client) -> None:
    first = await create_connection(client)
    response = await client.post("/integration/connection", json={"name": first["name"], "type": "csv",
                                                                  "params": {"path": "/tmp"}})
    assert response.status_code == 409
    assert response.json() == {"code": 409, "message": f"连接名称已存在：{first['name']}", "data": None}


async def test_list_filters_by_type_and_paginates(client) -> None:
    prefix = unique("pager")
    ids = [(await create_connection(client, name=f"{prefix}_{i}", type="jsonl", url=None,
                                    params={"path": "/tmp/x"}))["id"] for i in range(3)]

    page = (await client.get("/integration/connection/list",
                             params={"name": prefix, "type": "jsonl", "pageNum": 2, "pageSize": 2})).json()["data"]
    assert page["total"] == 3 and [r["id"] for r in page["rows"]] == ids[2:]
    none = (await client.get("/integration/connection/list", params={"name": prefix, "type": "csv"})).json()
    assert none["data"] == {"total": 0, "rows": []}


async def test_delete_is_refused_while_a_batch_uses_the_connection(client) -> None:
    source, target = await create_connection(client), await create_connection(client)
    batch = await create_batch(client, source["id"], target["id"])

    response = await client.delete(f"/integration/connection/{target['id']}")
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": "连接正在被批次使用", "data": None}

    assert (await client.delete(f"/integration/batch/{batch['id']}")).status_code == 200
    response = await client.delete(f"/integration/connection/{target['id']}")
    assert response.json() == {"code": 200, "message": "操作成功", "data": None}
    missing = await client.get(f"/integration/connection/{target['id']}")
    assert missing.status_code == 404 and missing.json()["message"] == "连接不存在"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_unknown_connection_is_404(client, method: str) -> None:
    body = {"name": "x", "type": "csv"} if method == "PUT" else None
    response = await client.request(method, "/integration/connection/987654321", json=body)
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "连接不存在", "data": None}


async def test_unknown_type_is_400_naming_the_field(client) -> None:
    response = await client.post("/integration/connection", json={"name": unique("bad"), "type": "oracle"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("参数错误：type：")


async def test_live_test_succeeds_on_a_reachable_database(client, source_dsn) -> None:
    reachable = await create_connection(client, url=source_dsn)
    response = await client.post(f"/integration/connection/{reachable['id']}/test")
    assert response.json() == {"code": 200, "message": "连接成功", "data": None}


async def test_live_test_reports_the_sync_reason(client) -> None:
    refused = await create_connection(client, url=f"postgresql://app:{DB_PASSWORD}@127.0.0.1:1/db")
    response = await client.post(f"/integration/connection/{refused['id']}/test")
    assert response.status_code == 400
    assert response.json()["message"] == "连接失败：连接被拒绝"

"""`POST /integration/batch/{id}/check` through the real API on real systems (PostgreSQL, MariaDB, files,
an HTTP server, the broker): problems named by field, a preview after the mapping, and nothing written."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from schemas.messages import (
    CONNECT_TIMEOUT,
    EGRESS_REFUSED,
    source_column_missing,
    target_columns_missing,
    unmappable_columns,
)
from service.sync.check import phase_seconds
from tests.contract.cases.kafka import create_topic, produce
from tests.contract.cases.mysql import mysql_execute
from tests.support.api import (
    DB_PASSWORD,
    api_client,
    api_settings,
    asyncpg_url,
    bearer,
    create_batch,
    create_connection,
    unique,
)
from tests.support.builders import create_orders
from tests.support.databases import fresh_database
from tests.support.http_api import serving
from tests.support.loopback import closed_port, silent_server

MYSQL = "mysql://root@127.0.0.1:3306/test"


@pytest.fixture(scope="module")
def target_dsn() -> Iterator[str]:
    """A target database of this module alone, so "nothing was created in it" means something."""
    with fresh_database("bs_check") as dsn:
        yield dsn


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        yield client


def with_password(dsn: str) -> str:
    return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{DB_PASSWORD}@", 1)


async def pg(client, dsn: str) -> int:
    return (await create_connection(client, url=with_password(dsn)))["id"]


async def check(client, batch_id: int) -> dict:
    response = await client.post(f"/integration/batch/{batch_id}/check")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 200 and set(body["data"]) == {"ok", "problems", "notes", "columns", "preview", "slices"}
    assert body["message"] == ("检查通过" if body["data"]["ok"] else f"检查发现 {len(body['data']['problems'])} 个问题")
    return body["data"]


async def tables(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT schemaname || '.' || tablename AS t FROM pg_tables "
                                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")
        return [r["t"] for r in rows]
    finally:
        await conn.close()


async def execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def orders(source_dsn) -> str:
    table = unique("orders")
    await create_orders(source_dsn, table, 20)
    return table


async def test_a_good_batch_is_ok_with_columns_and_a_preview_after_the_mapping(client, source_dsn, target_dsn,
                                                                              orders) -> None:
    target = unique("copy")
    await execute(target_dsn, f'CREATE TABLE "{target}" (order_id bigint PRIMARY KEY, amount numeric(12,2), '
                              "customer text, origin text)")
    before = await tables(target_dsn)
    batch = await create_batch(client, await pg(client, source_dsn), await pg(client, target_dsn),
                               source={"table": orders}, target={"table": target, "mode": "upsert",
                                                                 "keyColumns": ["order_id"]},
                               mapping=[{"from": "id", "to": "order_id"}, {"from": "quantity", "drop": True},
                                        {"from": "paid", "drop": True}, {"from": "created_at", "drop": True},
                                        {"from": "note", "drop": True}, {"from": "tags", "drop": True},
                                        {"from": "ratio", "drop": True}, {"to": "origin", "value": "shop"}])

    data = await check(client, batch["id"])

    assert data["ok"] is True and data["problems"] == [] and data["notes"] == []
    assert data["columns"] == [
        {"name": "order_id", "source": "id", "kind": "int", "targetType": "bigint"},
        {"name": "customer", "source": "customer", "kind": "string", "targetType": "text"},
        {"name": "amount", "source": "amount", "kind": "decimal", "targetType": "numeric(12,2)"},
        {"name": "origin", "source": None, "kind": "string", "targetType": "text"},
    ]
    assert data["preview"] == [{"order_id": n, "customer": f"客户-{n}", "amount": f"{n * 1.25:.2f}", "origin": "shop"}
                               for n in range(1, 6)]
    assert await tables(target_dsn) == before, "the dry run created a table (checkpoints, staging)"
    assert not [t for t in before if "batchsync" in t]
    conn = await asyncpg.connect(target_dsn)
    try:
        assert await conn.fetchval(f'SELECT count(*) FROM "{target}"') == 0
    finally:
        await conn.close()


async def test_a_typo_in_the_table_and_the_mapping_is_a_problem_naming_each(client, source_dsn, target_dsn,
                                                                           orders) -> None:
    source, sink = await pg(client, source_dsn), await pg(client, target_dsn)
    typo = await create_batch(client, source, sink, source={"table": "ordres"},
                              target={"table": unique("t"), "mode": "append"})
    data = await check(client, typo["id"])
    assert data["ok"] is False and data["preview"] == [] and data["columns"] == []
    assert data["problems"] == [{"field": "source.table", "message": "源表不存在：ordres"},
                                {"field": "target.table", "message": f"目标表不存在：{typo['target']['table']}"}]

    mapped = await create_batch(client, source, sink, source={"table": orders},
                                target={"table": unique("t"), "mode": "append", "create": True},
                                mapping=[{"from": "id"}, {"from": "amout", "to": "amount_paid"}])
    data = await check(client, mapped["id"])
    assert data["problems"] == [{"field": "mapping[1].from", "message": source_column_missing("amout")}]


async def test_a_target_the_run_would_create_is_a_note_and_is_not_created(client, source_dsn, target_dsn,
                                                                          orders) -> None:
    target = unique("created")
    before = await tables(target_dsn)
    batch = await create_batch(client, await pg(client, source_dsn), await pg(client, target_dsn),
                               source={"query": f'SELECT id, customer FROM "{orders}" ORDER BY id'},
                               target={"table": target, "mode": "overwrite", "create": True})
    data = await check(client, batch["id"])
    assert data["ok"] is True
    assert data["notes"] == [{"field": "target.table", "message": f"目标表不存在：{target}，同步时将自动创建"}]
    assert [c["targetType"] for c in data["columns"]] == [None, None]
    assert data["preview"] == [{"id": n, "customer": f"客户-{n}"} for n in range(1, 6)]
    assert await tables(target_dsn) == before


async def test_columns_that_do_not_fit_the_target_are_problems(client, source_dsn, target_dsn, orders) -> None:
    target = unique("narrow")
    await execute(target_dsn, f'CREATE TABLE "{target}" (id bigint, customer integer)')
    batch = await create_batch(client, await pg(client, source_dsn), await pg(client, target_dsn),
                               source={"query": f'SELECT id, customer, note FROM "{orders}"'},
                               target={"table": target, "mode": "append"})
    data = await check(client, batch["id"])
    assert data["ok"] is False
    assert [p["field"] for p in data["problems"]] == ["mapping", "mapping"]
    assert data["problems"][0]["message"] == target_columns_missing(target, ["note"])
    assert "customer" in data["problems"][1]["message"] and "integer" in data["problems"][1]["message"]


async def test_unreachable_and_refused_connections_are_problems_without_secrets(client, state_dsn,
                                                                                target_dsn) -> None:
    dead = (await create_connection(client, url=f"postgresql://app:{DB_PASSWORD}@127.0.0.1:{closed_port()}/db"))["id"]
    batch = await create_batch(client, dead, await pg(client, target_dsn), source={"table": "orders"},
                               target={"table": unique("t"), "mode": "append", "create": True})
    data = await check(client, batch["id"])
    assert data["problems"] == [{"field": "sourceConnectionId", "message": "连接被拒绝"}]

    async with api_client(api_settings(asyncpg_url(state_dsn), egress_deny="127.0.0.1")) as denied:
        data = await check(denied, batch["id"])
    assert [p["field"] for p in data["problems"]] == ["sourceConnectionId", "targetConnectionId"]
    assert {p["message"] for p in data["problems"]} == {EGRESS_REFUSED}


async def test_no_batch_is_404_and_the_query_permission_is_needed(client, source_dsn) -> None:
    missing = await client.post("/integration/batch/999999/check")
    assert missing.status_code == 404 and missing.json() == {"code": 404, "message": "批次不存在", "data": None}
    batch = await create_batch(client, await pg(client, source_dsn), await pg(client, source_dsn))
    denied = await client.post(f"/integration/batch/{batch['id']}/check", headers=bearer(["integration:batch:sync"]))
    allowed = await client.post(f"/integration/batch/{batch['id']}/check",
                                headers=bearer(["integration:batch:query"]))
    assert denied.status_code == 403 and allowed.status_code == 200


@pytest.mark.slow
async def test_mariadb_source_into_a_postgresql_table_the_run_creates(client, target_dsn) -> None:
    table = unique("m_orders")
    await mysql_execute(MYSQL, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2))")
    await mysql_execute(MYSQL, f"INSERT INTO `{table}` VALUES (%s, %s, %s)",
                        [(n, f"item-{n}", f"{n}.50") for n in range(1, 9)])
    source = (await create_connection(client, type="mysql", url=MYSQL))["id"]
    batch = await create_batch(client, source, await pg(client, target_dsn), source={"table": table},
                               target={"table": unique("from_m"), "mode": "append", "create": True},
                               mapping=[{"from": "price", "type": "string"}])
    data = await check(client, batch["id"])
    assert data["ok"] is True, data
    assert [(c["name"], c["kind"]) for c in data["columns"]] == [("id", "int"), ("name", "string"),
                                                                 ("price", "string")]
    assert data["preview"][:2] == [{"id": 1, "name": "item-1", "price": "1.50"},
                                   {"id": 2, "name": "item-2", "price": "2.50"}]
    assert len(data["preview"]) == 5

    typo = await create_batch(client, source, await pg(client, target_dsn), source={"table": "ordres"},
                              target={"table": unique("x"), "mode": "append", "create": True})
    assert (await check(client, typo["id"]))["problems"] == [{"field": "source.table",
                                                              "message": "源表不存在：ordres"}]


async def test_csv_folder_into_a_jsonl_folder_table_is_the_file_name(client, tmp_path: Path) -> None:
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    outbox.mkdir()
    (inbox / "orders.csv").write_text("id,name\n" + "".join(f"{n},n{n}\n" for n in range(1, 10)))
    source = (await create_connection(client, type="csv", url=None, params={"path": str(inbox)}))["id"]
    target = (await create_connection(client, type="jsonl", url=None, params={"path": str(outbox)}))["id"]

    untyped = await create_batch(client, source, target, source={"table": "orders"},
                                 target={"table": "orders_out", "mode": "append", "create": True})
    data = await check(client, untyped["id"])  # a run could not create the file either: CSV has no types
    assert data["problems"] == [{"field": "mapping", "message": unmappable_columns(["id", "name"])}]

    good = await create_batch(client, source, target, source={"table": "orders"},
                              target={"table": "orders_out", "mode": "append", "create": True},
                              mapping=[{"from": "id", "type": "int"}, {"from": "name", "type": "string"}])
    data = await check(client, good["id"])
    assert data["ok"] is True, data
    assert data["notes"] == [{"field": "target.table", "message": "目标表不存在：orders_out，同步时将自动创建"}]
    assert data["preview"] == [{"id": n, "name": f"n{n}"} for n in range(1, 6)]

    typo = await create_batch(client, source, target, source={"table": "ordres"},
                              target={"table": "orders_out", "mode": "append"})
    data = await check(client, typo["id"])
    assert data["problems"] == [{"field": "source.table", "message": "源表不存在：ordres"},
                                {"field": "target.table", "message": "目标表不存在：orders_out"}]
    assert sorted(p.name for p in outbox.rglob("*")) == [], "the dry run wrote into the target folder"

    (outbox / "existing.csv").write_text("id,other\n1,2\n")
    csv_target = (await create_connection(client, type="csv", url=None, params={"path": str(outbox)}))["id"]
    into = await create_batch(client, source, csv_target, source={"table": "orders"},
                              target={"table": "existing", "mode": "append"})
    data = await check(client, into["id"])
    assert data["problems"] == [{"field": "mapping", "message": target_columns_missing("existing", ["name"])}]
    assert sorted(p.name for p in outbox.rglob("*")) == ["existing.csv"]


async def test_http_source_preview(client, target_dsn) -> None:
    with serving() as api:
        api.add("items", [{"id": n, "title": f"t{n}"} for n in range(1, 30)])
        source = (await create_connection(client, type="http", url=f"{api.url}/api",
                                          params={"recordsPath": "data.items",
                                                  "pagination": {"type": "page", "pageParam": "page",
                                                                 "sizeParam": "size", "pageSize": 10}}))["id"]
        batch = await create_batch(client, source, await pg(client, target_dsn), source={"table": "items"},
                                   target={"table": unique("items"), "mode": "append", "create": True},
                                   mapping=[{"from": "title", "type": "string"}])
        data = await check(client, batch["id"])
        typo = await create_batch(client, source, await pg(client, target_dsn), source={"table": "itmes"},
                                  target={"table": unique("items"), "mode": "append", "create": True})
        missing = await check(client, typo["id"])
    assert data["ok"] is True, data
    assert data["preview"] == [{"id": n, "title": f"t{n}"} for n in range(1, 6)]
    assert missing["ok"] is False and missing["problems"][0]["field"] == "source.table"


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.slow
async def test_kafka_source_and_target_are_read_only(client, broker, target_dsn) -> None:
    topic, out = unique("ck_in"), unique("ck_out")
    await create_topic(broker.bootstrap, topic, 1)
    await create_topic(broker.bootstrap, out, 1)
    await produce(broker.bootstrap, topic, [json.dumps({"id": n, "v": f"x{n}"}).encode() for n in range(1, 8)],
                  [None] * 7)
    source = (await create_connection(client, type="kafka", url=None, params={"bootstrap": broker.bootstrap}))["id"]
    before = await _topics(broker.bootstrap)

    into_pg = await create_batch(client, source, await pg(client, target_dsn), source={"table": topic},
                                 target={"table": unique("k"), "mode": "append", "create": True},
                                 mapping=[{"from": "v", "type": "string"}])
    data = await check(client, into_pg["id"])
    assert data["ok"] is True, data
    assert data["preview"] == [{"id": n, "v": f"x{n}"} for n in range(1, 6)]
    again = await check(client, into_pg["id"])
    assert again["preview"] == data["preview"], "the dry run moved the consumer group's offsets"

    into_topic = await create_batch(client, source, source, source={"table": topic},
                                    target={"table": out, "mode": "append"})
    data = await check(client, into_topic["id"])
    assert data["ok"] is True and [c["name"] for c in data["columns"]] == ["id", "v"], data
    typo = await create_batch(client, source, source, source={"table": topic},
                              target={"table": "ordres", "mode": "append"})
    data = await check(client, typo["id"])
    assert data["problems"] == [{"field": "target.table", "message": "目标表不存在：ordres"}]
    assert await _topics(broker.bootstrap) == before, "the dry run created a topic"


async def test_a_silent_server_is_a_timeout_within_the_bound_and_a_bad_cast_fails_the_preview(
        client, source_dsn, target_dsn, orders) -> None:
    with silent_server() as port:
        silent = (await create_connection(client, url=f"postgresql://app@127.0.0.1:{port}/db"))["id"]
        batch = await create_batch(client, silent, await pg(client, target_dsn), source={"table": "orders"},
                                   target={"table": unique("t"), "mode": "append", "create": True})
        started = time.monotonic()
        data = await check(client, batch["id"])
        elapsed = time.monotonic() - started
    assert data["problems"] == [{"field": "sourceConnectionId", "message": CONNECT_TIMEOUT}]
    assert elapsed < phase_seconds(2) + 2

    cast = await create_batch(client, await pg(client, source_dsn), await pg(client, target_dsn),
                              source={"table": orders}, target={"table": unique("t"), "mode": "append",
                                                                "create": True},
                              mapping=[{"from": "customer", "type": "int"}])
    data = await check(client, cast["id"])
    assert data["ok"] is False and [p["field"] for p in data["problems"]] == ["preview"], data
    assert data["preview"] == []


async def test_the_openapi_document_describes_the_new_operations(client) -> None:
    document = (await client.get("/openapi.json")).json()
    check_op = document["paths"]["/integration/batch/{id}/check"]["post"]
    types_op = document["paths"]["/integration/connection/types"]["get"]
    for operation in (check_op, types_op):
        assert operation["summary"] and "Needs `integration:" in operation["description"]
        assert "422" not in operation["responses"] and {"401", "403", "503"} <= set(operation["responses"])
    assert check_op["responses"]["404"]["content"]["application/json"]["example"]["message"] == "批次不存在"
    assert check_op["responses"]["200"]["content"]["application/json"]["example"]["data"]["problems"]

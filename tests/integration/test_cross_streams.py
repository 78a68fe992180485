"""HTTP → PostgreSQL, Kafka → PostgreSQL and PostgreSQL → Kafka through the whole stack (API, request
topic, worker, engine, connectors, reply), a few thousand rows of every type checked row by row."""

import hashlib
import json

import pytest

from tests.contract.cases.kafka import create_topic, produce, read_topic
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.harness import FIELDS, Context, make_rows, normalized
from tests.support.builders import unique
from tests.support.http_api import TOKEN, ApiServer, json_record, serving
from tests.support.stack import SOLO, create_batch, running_stack, stack_settings

ROWS = 3000


@pytest.fixture(scope="module")
async def stack(state_dsn, broker):
    async with running_stack(stack_settings(state_dsn, broker.bootstrap, **SOLO)) as running:
        yield running


@pytest.fixture(scope="module")
def api():
    with serving(ApiServer(auth="bearer")) as server:
        yield server


def pg(dsn: str, broker, tmp_path) -> PostgresCase:
    return PostgresCase(Context(pg_dsn=dsn, tmp_dir=tmp_path, kafka_bootstrap=broker.bootstrap))


async def connection(stack, type_: str, url: str | None = None, **params) -> int:
    response = await stack.client.post("/integration/connection", headers=stack.headers(),
                                       json={"name": unique(type_), "type": type_, "url": url, "params": params})
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["id"])


async def synced(stack, batch_id: int) -> int:
    response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["recordsSynced"])


def _value(row: dict) -> bytes:
    return json.dumps(json_record(row), ensure_ascii=False).encode()


def checksum(rows: list[tuple]) -> str:
    return hashlib.md5(repr(rows).encode()).hexdigest()


def same(actual: list[tuple], expected: list[tuple]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got == want, f"row {want[0]} differs"
    assert checksum(actual) == checksum(expected)


async def test_http_to_postgresql(stack, api, target_dsn, broker, tmp_path):
    rows = make_rows(ROWS)
    table = api.add(unique("api"), rows)
    target = pg(target_dsn, broker, tmp_path)
    await target.create(table)
    source_id = await connection(stack, "http", f"{api.url}/api", recordsPath="data.items",
                                 auth={"type": "bearer", "token": TOKEN},
                                 pagination={"type": "cursor", "nextCursorPath": "meta.next", "sizeParam": "size",
                                             "pageSize": 400})
    target_id = await connection(stack, "postgresql", target_dsn)
    batch_id = await create_batch(stack, unique("b"), source_id, target_id, {"table": table},
                                  {"table": table, "mode": "append"}, chunkSize=700)

    assert await synced(stack, batch_id) == ROWS
    same(normalized(await target.read(target.endpoint, table), FIELDS), normalized(rows, FIELDS))


async def test_kafka_to_postgresql_and_the_next_run_reads_only_new_records(stack, target_dsn, broker, tmp_path):
    rows, later = make_rows(ROWS), make_rows(400, start=ROWS + 1)
    topic = unique("in")
    await create_topic(broker.bootstrap, topic, 3)
    await produce(broker.bootstrap, topic, [_value(r) for r in rows], [str(r["id"]).encode() for r in rows])
    target = pg(target_dsn, broker, tmp_path)
    await target.create(topic)
    source_id = await connection(stack, "kafka", bootstrap=broker.bootstrap, groupId=unique("g"))
    target_id = await connection(stack, "postgresql", target_dsn)
    batch_id = await create_batch(stack, unique("b"), source_id, target_id, {"table": topic},
                                  {"table": topic, "mode": "append"}, chunkSize=1000)

    assert await synced(stack, batch_id) == ROWS
    await produce(broker.bootstrap, topic, [_value(r) for r in later], [None] * len(later))
    assert await synced(stack, batch_id) == 400
    same(normalized(await target.read(target.endpoint, topic), FIELDS), normalized(rows + later, FIELDS))


async def test_postgresql_to_kafka_reads_back_equal(stack, source_dsn, broker, tmp_path):
    rows = make_rows(ROWS)
    table = unique("pg")
    source = pg(source_dsn, broker, tmp_path)
    await source.seed(table, rows)
    topic = unique("out")
    await create_topic(broker.bootstrap, topic, 3)
    source_id = await connection(stack, "postgresql", source_dsn)
    target_id = await connection(stack, "kafka", bootstrap=broker.bootstrap, key="id")
    batch_id = await create_batch(stack, unique("b"), source_id, target_id, {"table": table},
                                  {"table": topic, "mode": "append"}, chunkSize=800)

    assert await synced(stack, batch_id) == ROWS
    written = await read_topic(broker.bootstrap, topic)
    assert all(isinstance(r["doc"], dict) for r in written if r["doc"] is not None)  # nested, not JSON text
    same(normalized(written, FIELDS), normalized(rows, FIELDS))


async def test_a_kafka_target_refuses_upsert_at_the_api(stack, broker, source_dsn):
    source_id = await connection(stack, "postgresql", source_dsn)
    target_id = await connection(stack, "kafka", bootstrap=broker.bootstrap)
    response = await stack.client.post("/integration/batch", headers=stack.headers(), json={
        "name": unique("b"), "sourceConnectionId": source_id, "source": {"table": "t"},
        "targetConnectionId": target_id, "target": {"table": "t", "mode": "upsert", "keyColumns": ["id"]}})
    assert response.status_code == 400
    assert response.json()["message"].endswith("目标类型 kafka 不支持 upsert 模式")

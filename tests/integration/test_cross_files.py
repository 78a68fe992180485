"""Files across systems on real PostgreSQL and real files: CSV → PostgreSQL in GBK, UTF-8 with BOM, gzip
and a glob over a folder; PostgreSQL → JSON Lines and CSV read back value by value; one of each
direction through the whole HTTP stack. The CSV files are PostgreSQL's own `COPY … (FORMAT csv)`
output, so the reader is checked against an independent writer."""

import gzip
import json
from pathlib import Path

import asyncpg
import pytest

from schemas.api import SourceSpec, TargetSpec
from service.connectors.base import TargetTypes
from service.connectors.csv.source import CsvSource
from service.connectors.csv.stream import COPY_CSV, streamable
from service.connectors.postgresql.target import PostgresTarget
from service.sync.model import Endpoint
from service.sync.transforms import plan_columns
from tests.contract.cases.jsonl import read_jsonl
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.harness import FIELDS, Context, Crash, Recorder, make_rows, normalized, spec_for, sync
from tests.support.builders import create_empty_like_orders, create_orders, table_fingerprint, unique
from tests.support.policy import policy_for
from tests.support.stack import SOLO, create_batch, create_connection, running_stack, stack_settings

ROWS = 3000
NULL = "\\N"
"""PostgreSQL's CSV writes '' for an empty string; NULL gets its own marker so both survive."""


async def exported_csv(dsn: str, table: str, *, where: str = "true") -> str:
    """PostgreSQL's CSV of `table` (header, NULL as \\N), as text."""
    conn = await asyncpg.connect(dsn)
    chunks: list[bytes] = []

    async def collect(data: bytes) -> None:
        chunks.append(data)

    try:
        await conn.copy_from_query(f'SELECT * FROM "{table}" WHERE {where} ORDER BY id', output=collect,
                                   format="csv", header=True, null=NULL)
    finally:
        await conn.close()
    return b"".join(chunks).decode("utf-8")


@pytest.fixture
async def orders(source_dsn) -> str:
    table = unique("orders")
    await create_orders(source_dsn, table, ROWS)
    return table


def csv_folder(path: Path, **params: object) -> Endpoint:
    return Endpoint(type="csv", params={"path": str(path), **params}, policy=policy_for())


def csv_endpoint(path: Path, **params: object) -> Endpoint:
    return Endpoint(type="csv", params={"path": str(path), "nullValue": NULL, **params}, policy=policy_for())


@pytest.mark.parametrize(("encoding", "data"), [
    ("utf-8-sig", lambda text: b"\xef\xbb\xbf" + text.encode("utf-8")),
    ("utf-8", lambda text: gzip.compress(text.encode("utf-8"))),
])
async def test_csv_with_a_bom_or_gzip_into_postgresql(tmp_path, orders, source_dsn, target_dsn, encoding, data):
    name = "orders.csv.gz" if encoding == "utf-8" else "orders.csv"
    (tmp_path / name).write_bytes(data(await exported_csv(source_dsn, orders)))
    await create_empty_like_orders(target_dsn, orders)
    target = Endpoint(type="postgresql", url=target_dsn)

    result = await sync(spec_for((csv_endpoint(tmp_path, encoding=encoding), SourceSpec(table="orders")),
                                 target, orders, chunk_size=700))

    assert result.records_written == ROWS and result.chunks == 5
    assert await table_fingerprint(target_dsn, orders) == await table_fingerprint(source_dsn, orders)


async def test_a_glob_over_a_folder_of_csv_files_into_postgresql(tmp_path, orders, source_dsn, target_dsn):
    for part, where in enumerate(("id <= 1000", "id > 1000 AND id <= 1001", "id > 1001")):
        text = await exported_csv(source_dsn, orders, where=where)
        path = tmp_path / (f"orders_{part}.csv" + (".gz" if part == 2 else ""))
        path.write_bytes(gzip.compress(text.encode()) if part == 2 else text.encode())
    (tmp_path / "other.csv").write_text("id\n1\n")
    await create_empty_like_orders(target_dsn, orders)

    source = (csv_endpoint(tmp_path / "orders_*"), SourceSpec(table="orders"))
    result = await sync(spec_for(source, Endpoint(type="postgresql", url=target_dsn), orders, chunk_size=1000))

    assert result.records_written == ROWS
    assert await table_fingerprint(target_dsn, orders) == await table_fingerprint(source_dsn, orders)


async def test_postgresql_into_csv_reads_back_every_type(tmp_path, reference_case):
    rows = make_rows(2000)
    table = unique("all")
    source = await reference_case.seed(table, rows)
    (tmp_path / f"{table}.csv").write_text(",".join(f.name for f in FIELDS) + "\n", encoding="utf-8")

    await sync(spec_for(source, csv_folder(tmp_path), table, chunk_size=600))

    back = (tmp_path / f"{table}.csv").read_text(encoding="utf-8")
    sink = PostgresCase(Context(pg_dsn=reference_case.dsn, tmp_dir=tmp_path, kafka_bootstrap=""))
    copy = unique("back")
    await sink.create(copy)
    await sync(spec_for((csv_folder(tmp_path), SourceSpec(table=table)),
                        sink.endpoint, copy, chunk_size=600))
    assert back.count("\n") == 2001
    assert normalized(await sink.read(sink.endpoint, copy), FIELDS) == normalized(rows, FIELDS)


async def test_csv_copy_stream_into_postgresql_resumes_after_a_crash(tmp_path, orders, source_dsn, target_dsn):
    """The fast path: GBK files with PostgreSQL's default NULL (an empty string is quoted), streamed as CSV
    into COPY; an empty string reads as NULL on either path."""
    for part, where in enumerate(("id <= 1500", "id > 1500")):
        conn = await asyncpg.connect(source_dsn)
        chunks: list[bytes] = []

        async def collect(data: bytes, into: list[bytes] = chunks) -> None:
            into.append(data)

        try:
            await conn.copy_from_query(f'SELECT * FROM "{orders}" WHERE {where} ORDER BY id', output=collect,
                                       format="csv", header=True)
        finally:
            await conn.close()
        (tmp_path / f"orders_{part}.csv").write_bytes(b"".join(chunks).decode().encode("gbk"))
    await create_empty_like_orders(target_dsn, orders)
    source = (csv_folder(tmp_path / "orders_*.csv", encoding="gbk"),
              SourceSpec(table="orders"))
    target = Endpoint(type="postgresql", url=target_dsn)
    async with PostgresTarget(target, TargetSpec(table=orders), 2) as sink, CsvSource(*source, 2) as reader:
        types = TargetTypes({c.name: c.sql_type for c in await sink.describe()}, sink.capabilities.types)
        columns = await reader.describe()
        assert sink.accept_stream(COPY_CSV) and streamable(reader.options, columns,
                                                           plan_columns([c.name for c in columns], None), types)

    spec = spec_for(source, target, orders, chunk_size=1000)
    with pytest.raises(Crash):
        await sync(spec, Recorder(crash_after=1))
    result = await sync(spec)

    assert result.records_written == ROWS and result.resumed_from_chunk == 1
    conn = await asyncpg.connect(source_dsn)
    try:
        assert await conn.fetchval(f"SELECT count(*) FROM \"{orders}\" WHERE note = ''") > 0
        await conn.execute(f"UPDATE \"{orders}\" SET note = NULL WHERE note = ''")
    finally:
        await conn.close()
    assert await table_fingerprint(target_dsn, orders) == await table_fingerprint(source_dsn, orders)


@pytest.fixture
def reference_case(source_dsn, tmp_path) -> PostgresCase:
    return PostgresCase(Context(pg_dsn=source_dsn, tmp_dir=tmp_path, kafka_bootstrap=""))


@pytest.fixture(scope="module")
async def stack(state_dsn, broker):
    async with running_stack(stack_settings(state_dsn, broker.bootstrap, **SOLO)) as running:
        yield running


async def file_connection(stack, kind: str, params: dict) -> int:
    response = await stack.client.post("/integration/connection", headers=stack.headers(),
                                       json={"name": unique(kind), "type": kind, "params": params})
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["id"])


async def synced(stack, batch_id: int) -> dict:
    response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_http_gbk_csv_into_postgresql(stack, tmp_path, orders, source_dsn, target_dsn):
    (tmp_path / "订单.csv").write_bytes((await exported_csv(source_dsn, orders)).encode("gbk"))
    await create_empty_like_orders(target_dsn, orders)
    source_id = await file_connection(stack, "csv", {"path": str(tmp_path / "订单.csv"), "encoding": "gbk",
                                                     "nullValue": NULL})
    target_id = await create_connection(stack, unique("pg"), target_dsn)
    batch_id = await create_batch(stack, unique("batch"), source_id, target_id, {"table": "orders"},
                                  {"table": orders, "mode": "overwrite"}, chunkSize=1000)

    for _ in range(2):
        assert (await synced(stack, batch_id))["recordsSynced"] == ROWS
    assert await table_fingerprint(target_dsn, orders) == await table_fingerprint(source_dsn, orders)


async def test_http_postgresql_into_a_new_jsonl_file_carries_every_type(stack, tmp_path, reference_case):
    rows = make_rows(2500)
    table = unique("all")
    await reference_case.seed(table, rows)
    source_id = await create_connection(stack, unique("pg"), reference_case.dsn)
    target_id = await file_connection(stack, "jsonl", {"path": str(tmp_path)})
    batch_id = await create_batch(stack, unique("batch"), source_id, target_id, {"table": table},
                                  {"table": table, "mode": "append", "create": True}, chunkSize=1000)

    assert (await synced(stack, batch_id))["recordsSynced"] == 2500

    back = read_jsonl(tmp_path / f"{table}.jsonl")
    assert len(back) == 2500 and set(back[0]) == {f.name for f in FIELDS}
    assert isinstance(back[0]["doc"], dict) and isinstance(back[0]["id"], int) and isinstance(back[0]["paid"], bool)
    assert normalized(back, FIELDS) == normalized(rows, FIELDS)
    [work] = tmp_path.glob(".batchsync/*.jsonl.*-*")
    assert [p.name for p in work.iterdir()] == ["checkpoint.json"], "only the finished checkpoint stays"
    assert json.loads((work / "checkpoint.json").read_text())["extra"]["finished"] is True

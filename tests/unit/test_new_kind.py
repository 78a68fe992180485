"""Adding a system is one package and one registry line. A kind that exists only in the tests
(tests/support/memory_kind/: params, a ClickHouse-like target, its type map, its KIND) is registered beside
the built-in ones, and batches run through it via the engine: file sources convert their values to what
its own type map says, the engine creates its table with its spellings, and the registry refuses what its
KIND does not declare. Nothing in service/ knows it exists."""

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.api import SourceSpec, TargetSpec
from service.connectors.base import Column
from service.connectors.registry import KINDS, Registry
from service.sync.engine import execute
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint, ProgressUpdate, RunResult, RunSpec
from tests.support import memory_kind
from tests.support.memory_kind.target import DATABASES, Table
from tests.support.policy import policy_for

CONNECTORS = Registry({**KINDS, memory_kind.KIND.name: memory_kind.KIND})
"""The built-in kinds plus the new one: the registry line a new system adds."""


class Quiet:
    async def on_start(self, resumed_from_chunk: int, total_estimate: int | None) -> None:
        pass

    async def on_chunk(self, update: ProgressUpdate) -> None:
        pass

    async def on_phase(self, update: ProgressUpdate) -> None:
        pass

    def cancel_requested(self) -> bool:
        return False


async def run(source: Endpoint, table: str, database: str, *, mode: str = "append", create: bool = False,
              source_table: str = "items") -> RunResult:
    run_id = uuid.uuid4()
    spec = RunSpec(run_id=run_id, checkpoint_key=run_id, batch_id=1, source_endpoint=source,
                   source=SourceSpec(table=source_table),
                   target_endpoint=Endpoint("memory", params={"database": database}),
                   target=TargetSpec(table=table, mode=mode, create=create), mapping=None, chunk_size=2)
    return await execute(spec, Quiet(), connectors=CONNECTORS, connect_timeout=1)


async def test_a_csv_batch_lands_in_the_new_kind_converted_by_its_own_type_map(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("id,amount,at,ok\n1,12.50,2026-01-01T08:30:00+08:00,t\n"
                                        "2,-0.10,2026-02-03 04:05:06,false\n3,7,2026-03-01T00:00:00Z,1\n")
    database = uuid.uuid4().hex
    DATABASES[database] = {"items": Table([Column("id", "Int64", "int"), Column("amount", "Decimal(14,2)", "decimal"),
                                           Column("at", "DateTime64(6,'UTC')", "datetime"),
                                           Column("ok", "Bool", "bool")])}

    result = await run(Endpoint("csv", params={"path": str(tmp_path)}, policy=policy_for(tmp_path)), "items",
                       database)

    assert (result.records_written, result.chunks) == (3, 2)
    assert DATABASES[database]["items"].rows == [
        (1, Decimal("12.50"), datetime(2026, 1, 1, 0, 30, tzinfo=UTC), True),
        (2, Decimal("-0.10"), datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC), False),
        (3, Decimal("7"), datetime(2026, 3, 1, tzinfo=UTC), True),
    ]


async def test_the_engine_creates_its_table_with_its_spellings(tmp_path: Path) -> None:
    (tmp_path / "items.jsonl").write_text('{"id": 1, "name": "北京", "day": "2026-01-31", "tags": ["a"]}\n'
                                          '{"id": 2, "name": null, "day": null, "tags": {"b": 1}}\n')
    database = uuid.uuid4().hex
    declared = {"id": "int", "name": "string", "day": "date", "tags": "json"}
    source = Endpoint("jsonl", params={"path": str(tmp_path), "columns": declared}, policy=policy_for(tmp_path))

    await run(source, "created", database, create=True)

    table = DATABASES[database]["created"]
    assert [(c.name, c.sql_type) for c in table.columns] == [
        ("id", "Int64"), ("name", "String"), ("day", "Date32"), ("tags", "JSON")]
    assert table.rows == [(1, "北京", date(2026, 1, 31), '["a"]'), (2, None, None, '{"b": 1}')]


async def test_what_its_kind_does_not_declare_is_refused_by_the_registry(tmp_path: Path) -> None:
    files = Endpoint("csv", params={"path": str(tmp_path)}, policy=policy_for(tmp_path))
    with pytest.raises(ConfigInvalid, match="目标类型 memory 不支持 overwrite 模式"):
        await run(files, "items", "nowhere", mode="overwrite")
    with pytest.raises(ConfigInvalid, match="连接类型不能作为源：memory"):
        CONNECTORS.source_for(Endpoint("memory"), SourceSpec(table="items"), 1)
    assert memory_kind.KIND.params.model_json_schema()["properties"] == {
        "database": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Database"}}

"""Rejected rows under `errorLimit` (issue 11 item 5) through the real engine into real PostgreSQL: a CSV
with 5 bad values among 1,000 rows, strict and lenient; rows a target constraint refuses (CSV text, binary
COPY from PostgreSQL, decoded JSON Lines rows; append and upsert); beyond the limit by count and by ratio;
a crash after a chunk with rejected rows tells them again under the same ids."""

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from schemas.api import ErrorLimitSpec, SourceSpec
from service.connectors.base import RejectedRow
from service.connectors.sql.target import stage_parts
from service.sync.errors import SyncError
from service.sync.model import Endpoint, RunSpec
from service.sync.rejects import TooManyRejected, event_id
from tests.contract.harness import Crash, Recorder, spec_for, sync
from tests.support.policy import policy_for
from tests.support.sql import fetch

BAD_LINES = {17, 230, 231, 640, 999}
"""Data lines (1-based) whose `qty` is not an integer."""


class Rejects(Recorder):
    """The harness observer that also keeps the rejected rows it is told."""

    def __init__(self, crash_after: int | None = None) -> None:
        super().__init__(crash_after=crash_after)
        self.rejected: list[tuple[int, RejectedRow]] = []

    async def on_rejected(self, chunk: int, rows: list[RejectedRow]) -> None:
        self.rejected.extend((chunk, row) for row in rows)


def write_orders(path: Path, count: int = 1000) -> None:
    lines = ["id,name,qty"]
    lines += [f"{i},order {i},{'x' + str(i) if i in BAD_LINES else i % 50}" for i in range(1, count + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def execute_sql(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def with_limit(spec: RunSpec, **limit: Any) -> RunSpec:
    return RunSpec(**{**spec.__dict__, "error_limit": ErrorLimitSpec(**limit)})


@pytest.fixture
def orders_csv(tmp_path: Path) -> tuple[Endpoint, SourceSpec]:
    write_orders(tmp_path / "orders.csv")
    return Endpoint(type="csv", params={"path": str(tmp_path)}, policy=policy_for(tmp_path)), SourceSpec(table="orders")


@pytest.fixture
async def target_table(target_dsn: str) -> str:
    table = f"orders_{uuid.uuid4().hex[:8]}"
    await execute_sql(target_dsn, f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, qty integer)")
    return table


async def test_strict_a_bad_value_fails_the_run_naming_it(orders_csv: Any, target_dsn: str, target_table: str):
    with pytest.raises(SyncError) as failed:
        await sync(spec_for(orders_csv, Endpoint("postgresql", url=target_dsn), target_table, chunk_size=300))

    assert "x17" in str(failed.value) or "integer" in str(failed.value)
    assert await fetch(target_dsn, f"SELECT * FROM {target_table}") == []  # the first chunk held the bad row


async def test_lenient_writes_995_and_rejects_5_with_reasons(orders_csv: Any, target_dsn: str, target_table: str):
    observer = Rejects()
    spec = with_limit(spec_for(orders_csv, Endpoint("postgresql", url=target_dsn), target_table, chunk_size=300),
                      records=10)

    result = await sync(spec, observer)

    assert (result.records_read, result.records_written, result.records_rejected) == (1000, 995, 5)
    ids = [row["id"] for row in await fetch(target_dsn, f"SELECT id FROM {target_table} ORDER BY id")]
    assert ids == [i for i in range(1, 1001) if i not in BAD_LINES]
    assert [(chunk, row.row) for chunk, row in observer.rejected] == [
        (1 + (i - 1) // 300, {"id": str(i), "name": f"order {i}", "qty": f"x{i}"}) for i in sorted(BAD_LINES)]
    assert all("integer" in row.reason and f"x{row.row['id']}" in row.reason for _, row in observer.rejected)
    assert observer.updates[-1].records_rejected == 5


@pytest.mark.parametrize("mode", ["append", "upsert", "overwrite"])
async def test_rows_a_constraint_refuses_are_rejected(tmp_path: Path, target_dsn: str, mode: str):
    """A JSON Lines source hands decoded rows (copy_records_to_table); the CHECK constraint is the target's."""
    table = f"checked_{uuid.uuid4().hex[:8]}"
    await execute_sql(target_dsn, f"CREATE TABLE {table} (id bigint PRIMARY KEY, qty integer CHECK (qty >= 0), "
                                  f"code varchar(3))")
    lines = [f'{{"id": {i}, "qty": {-1 if i % 100 == 0 else i}, "code": "{"TOOLONG" if i == 7 else "ok"}"}}'
             for i in range(1, 501)]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = Endpoint(type="jsonl", params={"path": str(tmp_path)}, policy=policy_for(tmp_path)), SourceSpec(table="t")
    observer = Rejects()

    result = await sync(with_limit(spec_for(source, Endpoint("postgresql", url=target_dsn), table, mode=mode,
                                            chunk_size=128), records=6), observer)

    assert result.records_rejected == 6 and result.records_written == 494
    assert sorted(int(row.row["id"]) for _, row in observer.rejected) == [7, 100, 200, 300, 400, 500]
    reasons = {int(row.row["id"]): row.reason for _, row in observer.rejected}
    assert "check constraint" in reasons[100] and "too long" in reasons[7]
    assert (await fetch(target_dsn, f"SELECT count(*) AS n FROM {table}"))[0]["n"] == 494


async def test_binary_copy_from_postgresql_isolates_refused_rows(source_dsn: str, target_dsn: str):
    """PostgreSQL to PostgreSQL streams binary COPY: the refused tuples are cut out of it undecoded, and
    told with their values (read back through a constraint-free probe)."""
    name = f"bin_{uuid.uuid4().hex[:8]}"
    await execute_sql(source_dsn, f"CREATE TABLE {name} (id bigint PRIMARY KEY, qty integer)",
                      f"INSERT INTO {name} SELECT g, CASE WHEN g % 250 = 0 THEN NULL ELSE g END "
                      f"FROM generate_series(1, 1000) g")
    await execute_sql(target_dsn, f"CREATE TABLE {name} (id bigint PRIMARY KEY, qty integer NOT NULL)")
    observer = Rejects()
    source = Endpoint("postgresql", url=source_dsn), SourceSpec(table=name)

    result = await sync(with_limit(spec_for(source, Endpoint("postgresql", url=target_dsn), name, chunk_size=400),
                                   ratio=0.01), observer)

    assert (result.records_written, result.records_rejected) == (996, 4)
    assert [row.row for _, row in observer.rejected] == [{"id": i, "qty": None} for i in (250, 500, 750, 1000)]
    assert all("null value" in row.reason for _, row in observer.rejected)


async def test_beyond_the_record_limit_the_run_fails_with_count_and_reasons(orders_csv: Any, target_dsn: str,
                                                                           target_table: str):
    observer = Rejects()
    spec = with_limit(spec_for(orders_csv, Endpoint("postgresql", url=target_dsn), target_table, chunk_size=300),
                      records=3)

    with pytest.raises(TooManyRejected) as failed:
        await sync(spec, observer)

    assert "已拒绝 4 行" in failed.value.reason and "上限 3 行" in failed.value.reason
    assert 'integer: "x17"（1 行）' in failed.value.reason  # the first reasons, each with its count
    assert len(observer.rejected) == 4  # told before the run stopped: chunk 1 (17), chunk 2 (230, 231), 3 (640)


async def test_beyond_the_ratio_the_run_fails_before_publishing(orders_csv: Any, target_dsn: str, target_table: str):
    await execute_sql(target_dsn, f"INSERT INTO {target_table} VALUES (-1, 'old', 0)")
    spec = with_limit(spec_for(orders_csv, Endpoint("postgresql", url=target_dsn), target_table, mode="overwrite",
                               chunk_size=300), ratio=0.004)

    with pytest.raises(TooManyRejected) as failed:
        await sync(spec, Rejects())

    assert "已拒绝 5 行" in failed.value.reason and "0.40%" in failed.value.reason
    assert [r["id"] for r in await fetch(target_dsn, f"SELECT id FROM {target_table}")] == [-1]  # not swapped
    _, stage = stage_parts(target_table, str(spec.checkpoint_key))  # kept for a retry: dropped for the next tests
    await execute_sql(target_dsn, f"DROP TABLE {stage}")


async def test_a_crash_after_a_chunk_tells_its_rejected_rows_again_with_the_same_ids(
        orders_csv: Any, target_dsn: str, target_table: str):
    spec = with_limit(spec_for(orders_csv, Endpoint("postgresql", url=target_dsn), target_table, chunk_size=300),
                      records=10)
    crashed = Rejects(crash_after=1)
    with pytest.raises(Crash):
        await sync(spec, crashed)
    resumed = Rejects()
    result = await sync(spec, resumed)

    assert [r.row["id"] for _, r in crashed.rejected] == ["17", "230", "231"]
    assert [(c, r.row["id"]) for c, r in resumed.rejected] == [(1, "17"), (1, "230"), (1, "231"), (3, "640"),
                                                               (4, "999")]
    assert result.records_rejected == 5 and result.records_written == 995
    assert event_id(spec.checkpoint_key, 1, 0) == event_id(spec.checkpoint_key, 1, 0)


MYSQL_URL = "mysql://root@127.0.0.1:3306/test"


@pytest.mark.parametrize("kind", ["mysql", "sqlite"])
async def test_mariadb_and_sqlite_targets_reject_what_their_constraints_refuse(tmp_path: Path, kind: str):
    """Rows inserted with executemany are halved in savepoints the same way (SAVEPOINT / ROLLBACK TO)."""
    from tests.contract.cases.mysql import mysql_execute, mysql_fetch

    table = f"checked_{uuid.uuid4().hex[:8]}"
    ddl = f"CREATE TABLE {table} (id bigint PRIMARY KEY, qty integer NOT NULL CHECK (qty >= 0), code varchar(3))"
    lines = [f'{{"id": {i}, "qty": {-1 if i % 100 == 0 else i}, "code": "{"TOOLONG" if i == 7 else "ok"}"}}'
             for i in range(1, 301)]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = Endpoint(type="jsonl", params={"path": str(tmp_path)}, policy=policy_for(tmp_path)), SourceSpec(table="t")
    if kind == "mysql":
        await mysql_execute(MYSQL_URL, ddl)
        target = Endpoint("mysql", url=MYSQL_URL)
        refused = [7, 100, 200, 300]  # varchar(3) is enforced in strict mode
    else:
        import sqlite3

        with sqlite3.connect(tmp_path / "t.db") as db:
            db.execute(ddl)
        target = Endpoint("sqlite", url=f"sqlite:///{tmp_path / 't.db'}", policy=policy_for(tmp_path))
        refused = [100, 200, 300]  # SQLite keeps text of any length
    observer = Rejects()

    result = await sync(with_limit(spec_for(source, target, table, chunk_size=128), records=10), observer)

    assert sorted(int(row.row["id"]) for _, row in observer.rejected) == refused
    assert result.records_rejected == len(refused) and result.records_written == 300 - len(refused)
    assert all(row.reason.startswith("目标拒绝写入：") for _, row in observer.rejected)
    if kind == "mysql":
        assert (await mysql_fetch(MYSQL_URL, f"SELECT count(*) AS n FROM {table}"))[0]["n"] == 296
        await mysql_execute(MYSQL_URL, f"DROP TABLE {table}")


@pytest.mark.parametrize("declared", [False, True])
async def test_a_file_source_rejects_values_it_cannot_convert(tmp_path: Path, declared: bool):
    """Into a file target the source converts values itself: with `params.columns` kinds while parsing, else
    to the target's types chunk by chunk; the reason names the file and line either way."""
    write_orders(tmp_path / "orders.csv", 400)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "t.jsonl").write_text("", encoding="utf-8")
    params: dict[str, Any] = {"path": str(tmp_path)}
    if declared:
        params["columns"] = [{"name": "id", "kind": "int"}, "name", {"name": "qty", "kind": "int"}]
    source = Endpoint(type="csv", params=params, policy=policy_for(tmp_path)), SourceSpec(table="orders")
    target = Endpoint(type="jsonl", params={"path": str(tmp_path / "out"), "columns": [
        {"name": "id", "kind": "int"}, {"name": "name"}, {"name": "qty", "kind": "int"}]}, policy=policy_for(tmp_path))
    observer = Rejects()

    result = await sync(with_limit(spec_for(source, target, "t", chunk_size=150), records=5), observer)

    bad = sorted(i for i in BAD_LINES if i <= 400)
    assert (result.records_read, result.records_written, result.records_rejected) == (400, 400 - len(bad), len(bad))
    assert [row.row["id"] for _, row in observer.rejected] == [str(i) for i in bad]  # as the file has them
    assert all(row.reason.startswith("字段转换失败：qty（orders.csv 第 ") for _, row in observer.rejected)
    assert f"第 {bad[0] + 1} 行" in observer.rejected[0][1].reason
    written = (tmp_path / "out" / "t.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(written) == 400 - len(bad)

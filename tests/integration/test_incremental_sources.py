"""Incremental sync on a cursor column, on PostgreSQL, MariaDB and SQLite sources into a PostgreSQL
append target (so a row read twice would show as a duplicate): a row arriving late with the same cursor
value as the stored mark is synced by the next run, and no row is synced twice."""

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from schemas.api import SourceSpec, TargetSpec
from service.connectors.registry import REGISTRY
from service.sync.engine import execute
from service.sync.model import Endpoint, RunResult, RunSpec
from tests.contract.cases.mysql import mysql_execute
from tests.contract.harness import Recorder
from tests.support.builders import unique
from tests.support.policy import policy_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MYSQL_URL = "mysql://root@127.0.0.1:3306/test"


class Table:
    """One source table with (id, ts, name) in a given system."""

    def __init__(self, system: str, pg_dsn: str, tmp: Path) -> None:
        self.system, self.pg_dsn, self.name = system, pg_dsn, unique("inc")
        self.path = tmp / "inc.db"

    @property
    def endpoint(self) -> Endpoint:
        url = {"postgresql": self.pg_dsn, "mysql": MYSQL_URL, "sqlite": f"sqlite://{self.path}"}[self.system]
        return Endpoint(type=self.system, url=url, policy=policy_for())

    async def create(self) -> None:
        ddl = {"postgresql": "id bigint PRIMARY KEY, ts timestamptz NOT NULL, name text",
               "mysql": "id BIGINT PRIMARY KEY, ts DATETIME(6) NOT NULL, name LONGTEXT",
               "sqlite": "id INTEGER PRIMARY KEY, ts DATETIME NOT NULL, name TEXT"}[self.system]
        await self._execute(f'CREATE TABLE {self.name} ({ddl})', None)

    async def insert(self, rows: list[tuple[int, datetime, str]]) -> None:
        if self.system == "postgresql":
            conn = await asyncpg.connect(self.pg_dsn)
            try:
                await conn.executemany(f"INSERT INTO {self.name} VALUES ($1, $2, $3)", rows)
            finally:
                await conn.close()
        elif self.system == "mysql":
            await mysql_execute(MYSQL_URL, f"INSERT INTO {self.name} VALUES (%s, %s, %s)",
                                [(i, ts.replace(tzinfo=None), n) for i, ts, n in rows])
        else:
            await self._execute(f"INSERT INTO {self.name} VALUES (?, ?, ?)",
                                [(i, ts.strftime("%Y-%m-%d %H:%M:%S.%f+00:00"), n) for i, ts, n in rows])

    async def _execute(self, sql: str, rows: list[tuple] | None) -> None:
        if self.system == "postgresql":
            conn = await asyncpg.connect(self.pg_dsn)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()
        elif self.system == "mysql":
            await mysql_execute(MYSQL_URL, sql, rows)
        else:
            with sqlite3.connect(self.path) as conn:
                conn.execute(sql) if rows is None else conn.executemany(sql, rows)
            conn.close()


@pytest.fixture
async def target(target_dsn: str) -> tuple[str, str]:
    name = unique("inc_tgt")
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(f"CREATE TABLE {name} (id bigint, ts timestamptz, name text)")
    finally:
        await conn.close()
    return target_dsn, name


async def run(table: Table, target: tuple[str, str], mark: Any, chunk_size: int = 2) -> RunResult:
    run_id = uuid.uuid4()
    spec = RunSpec(run_id=run_id, checkpoint_key=run_id, batch_id=1, source_endpoint=table.endpoint,
                   source=SourceSpec(table=table.name, cursor_column="ts"),
                   target_endpoint=Endpoint("postgresql", url=target[0]),
                   target=TargetSpec(table=target[1], mode="append"), mapping=None, chunk_size=chunk_size,
                   high_water_mark=mark)
    return await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5)


async def target_ids(target: tuple[str, str]) -> list[int]:
    conn = await asyncpg.connect(target[0])
    try:
        return [r["id"] for r in await conn.fetch(f"SELECT id FROM {target[1]} ORDER BY id")]
    finally:
        await conn.close()


@pytest.mark.parametrize("system", ["postgresql", "mysql", "sqlite"])
async def test_a_late_row_with_the_marks_cursor_value_arrives_in_the_next_run_exactly_once(
    system: str, source_dsn: str, target, tmp_path: Path
) -> None:
    table = Table(system, source_dsn, tmp_path)
    await table.create()
    await table.insert([(i, T0 + timedelta(minutes=i), f"行{i}") for i in range(1, 6)])

    first = await run(table, target, None)
    assert first.records_written == 5
    assert first.high_water_mark["seen"] == [5] and first.high_water_mark["exclusive"] is False

    late_at_mark = T0 + timedelta(minutes=5)
    await table.insert([(6, late_at_mark, "late"), (7, late_at_mark + timedelta(minutes=1), "new")])
    second = await run(table, target, first.high_water_mark)
    third = await run(table, target, second.high_water_mark)

    assert second.records_written == 2
    assert second.high_water_mark["seen"] == [7]
    assert third.records_written == 0
    assert third.high_water_mark == second.high_water_mark
    assert await target_ids(target) == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("system", ["postgresql", "mysql", "sqlite"])
async def test_rows_sharing_the_newest_value_are_remembered_together(
    system: str, source_dsn: str, target, tmp_path: Path
) -> None:
    table = Table(system, source_dsn, tmp_path)
    await table.create()
    same = T0 + timedelta(hours=1)
    await table.insert([(1, T0, "a"), (2, same, "b"), (3, same, "c")])
    first = await run(table, target, None, chunk_size=1)
    await table.insert([(4, same, "late")])
    second = await run(table, target, first.high_water_mark, chunk_size=1)

    assert (first.records_written, sorted(first.high_water_mark["seen"])) == (3, [2, 3])
    assert (second.records_written, sorted(second.high_water_mark["seen"])) == (1, [2, 3, 4])
    assert await target_ids(target) == [1, 2, 3, 4]


async def test_a_legacy_plain_mark_reads_strictly_beyond_it(source_dsn: str, target, tmp_path: Path) -> None:
    table = Table("postgresql", source_dsn, tmp_path)
    await table.create()
    await table.insert([(i, T0 + timedelta(minutes=i), "x") for i in range(1, 4)])
    result = await run(table, target, "2026-03-01 12:02:00+00")
    assert result.records_written == 1
    assert await target_ids(target) == [3]

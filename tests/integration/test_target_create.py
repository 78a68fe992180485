"""Target preparation on PostgreSQL, MariaDB and SQLite targets: a missing table is created from the
source's schema through the type mapping when the batch opts in (`target.create`), with the key columns
as primary key; an existing table with an incompatible column fails the run before anything is written."""

from pathlib import Path

import pytest

from service.sync.errors import ConfigInvalid, TableMissing
from tests.contract.cases.mysql import MySQLCase, mysql_execute, mysql_fetch
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.cases.sqlite import SQLiteCase, sqlite_execute, sqlite_rows
from tests.contract.harness import FIELDS, Context, make_rows, normalized, spec_for, sync
from tests.support.builders import unique

SYSTEMS = ["postgresql", "mysql", "sqlite"]


def case(system: str, dsn: str, tmp: Path):
    ctx = Context(pg_dsn=dsn, tmp_dir=tmp, kafka_bootstrap="")
    return {"postgresql": PostgresCase, "mysql": MySQLCase, "sqlite": SQLiteCase}[system](ctx)


async def column_types(system: str, target, table: str) -> dict[str, str]:
    if system == "mysql":
        rows = await mysql_fetch(target.url, "SELECT COLUMN_NAME AS n, COLUMN_TYPE AS t, COLUMN_KEY AS k FROM "
                                             f"information_schema.COLUMNS WHERE TABLE_NAME = '{table}'")
        return {r["n"]: str(r["t"]) + (" PK" if r["k"] == "PRI" else "") for r in rows}
    if system == "sqlite":
        rows = sqlite_rows(target.path, f'PRAGMA table_info("{table}")')
        return {r["name"]: r["type"] + (" PK" if r["pk"] else "") for r in rows}
    import asyncpg
    conn = await asyncpg.connect(target.dsn)
    try:
        rows = await conn.fetch(
            """SELECT a.attname AS n, format_type(a.atttypid, a.atttypmod) AS t,
                      coalesce(a.attnum = ANY(i.indkey), false) AS k
                 FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
                WHERE a.attrelid = $1::regclass AND a.attnum > 0""", table)
        return {r["n"]: r["t"] + (" PK" if r["k"] else "") for r in rows}
    finally:
        await conn.close()


@pytest.mark.parametrize("system", SYSTEMS)
async def test_a_missing_table_is_created_from_the_source_schema(system, source_dsn, target_dsn, tmp_path) -> None:
    source_case = PostgresCase(Context(pg_dsn=source_dsn, tmp_dir=tmp_path, kafka_bootstrap=""))
    target = case(system, target_dsn, tmp_path)
    rows = make_rows(1200)
    table = unique("created")
    source = await source_case.seed(table, rows)

    result = await sync(spec_for(source, target.endpoint, table, mode="upsert", create=True, chunk_size=500))
    again = await sync(spec_for(source, target.endpoint, table, mode="upsert", create=True, chunk_size=500))

    assert (result.records_written, again.records_written) == (1200, 1200)
    assert normalized(await target.read(target.endpoint, table), FIELDS) == normalized(rows, FIELDS)
    types = await column_types(system, target, table)
    expected = {
        "postgresql": {"id": "bigint PK", "amount": "numeric(14,2)", "at": "timestamp with time zone",
                       "doc": "jsonb", "blob": "bytea", "paid": "boolean"},
        "mysql": {"id": "bigint(20) PK", "amount": "decimal(14,2)", "at": "datetime(6)", "doc": "longtext",
                  "blob": "longblob", "paid": "tinyint(1)"},
        "sqlite": {"id": "INTEGER PK", "amount": "DECIMAL_TEXT(14,2)", "at": "DATETIME", "doc": "JSON",
                   "blob": "BLOB", "paid": "BOOLEAN"},
    }[system]
    assert {name: types[name] for name in expected} == expected


@pytest.mark.parametrize("system", SYSTEMS)
async def test_without_opting_in_a_missing_table_fails_the_run(system, source_dsn, target_dsn, tmp_path) -> None:
    source_case = PostgresCase(Context(pg_dsn=source_dsn, tmp_dir=tmp_path, kafka_bootstrap=""))
    target = case(system, target_dsn, tmp_path)
    table = unique("absent")
    source = await source_case.seed(table, make_rows(5))
    with pytest.raises(TableMissing):
        await sync(spec_for(source, target.endpoint, table))


INCOMPATIBLE = {
    "postgresql": 'CREATE TABLE "{t}" (id bigint PRIMARY KEY, name integer)',
    "mysql": "CREATE TABLE `{t}` (id BIGINT PRIMARY KEY, name INT)",
    "sqlite": 'CREATE TABLE "{t}" (id INTEGER PRIMARY KEY, name INTEGER)',
}


async def target_count(system: str, target, table: str) -> int:
    if system == "mysql":
        return len(await mysql_fetch(target.url, f"SELECT id FROM `{table}`"))
    if system == "sqlite":
        return len(sqlite_rows(target.path, f'SELECT id FROM "{table}"'))
    return len(await target.read(target.endpoint, table))


@pytest.mark.parametrize("system", SYSTEMS)
async def test_an_incompatible_column_fails_before_writing_and_is_named(system, source_dsn, target_dsn,
                                                                        tmp_path) -> None:
    source_case = PostgresCase(Context(pg_dsn=source_dsn, tmp_dir=tmp_path, kafka_bootstrap=""))
    target = case(system, target_dsn, tmp_path)
    table = unique("clash")
    source_case.fields = [f for f in FIELDS if f.name in ("id", "name")]
    source = await source_case.seed(table, make_rows(50))
    ddl = INCOMPATIBLE[system].format(t=table)
    if system == "mysql":
        await mysql_execute(target.url, ddl)
    elif system == "sqlite":
        sqlite_execute(target.path, ddl)
    else:
        await target._execute(ddl)

    with pytest.raises(ConfigInvalid) as error:
        await sync(spec_for(source, target.endpoint, table, create=True))

    assert error.value.reason.startswith(f"目标表 {table} 的列 name 类型不兼容：string → ")
    assert await target_count(system, target, table) == 0

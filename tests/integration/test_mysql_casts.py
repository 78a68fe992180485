"""Mapping casts across systems: text columns of a MariaDB table cast (int, decimal, bool, date, datetime
with a time zone, json, string), renamed, dropped and set as constants into PostgreSQL; without the
cast the text→integer column is refused before anything is written."""

import asyncpg
import pytest

from schemas.api import MappingEntry, SourceSpec
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.model import Endpoint
from tests.contract.cases.mysql import mysql_execute
from tests.contract.harness import spec_for, sync
from tests.support.builders import unique

MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
SOURCE_DDL = """CREATE TABLE `{t}` (id BIGINT PRIMARY KEY, code VARCHAR(20), price VARCHAR(20), flag VARCHAR(5),
    day VARCHAR(10), at VARCHAR(40), doc LONGTEXT, amount DECIMAL(10,2), secret VARCHAR(20))"""
TARGET_DDL = """CREATE TABLE "{t}" (id bigint PRIMARY KEY, code bigint, price numeric(10,2), flag boolean, day date,
    at timestamptz, doc jsonb, amount_text text, origin text)"""
ROWS = [
    (1, " 00042", "12.50", "yes", "2026-01-02", "2026-01-02T03:04:05+08:00", '{"a": [1, "中"]}', "-3.25", "pw"),
    (2, "7", "0.01", "false", "2026-12-31", "2026-06-30 23:59:59.123456+00:00", "[]", "0.00", "pw"),
    (3, None, None, None, None, None, None, None, None),
]
MAPPING = [
    {"from": "code", "type": "int"}, {"from": "price", "type": "decimal"}, {"from": "flag", "type": "bool"},
    {"from": "day", "type": "date"}, {"from": "at", "type": "datetime"}, {"from": "doc", "type": "json"},
    {"from": "amount", "to": "amount_text", "type": "string"}, {"from": "secret", "drop": True},
    {"to": "origin", "value": "mariadb"},
]


async def setup(target_dsn: str, rows: list[tuple]) -> str:
    table = unique("casts")
    await mysql_execute(MYSQL_URL, SOURCE_DDL.format(t=table))
    await mysql_execute(MYSQL_URL, f"INSERT INTO `{table}` VALUES ({', '.join(['%s'] * 9)})", rows)
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(TARGET_DDL.format(t=table))
    finally:
        await conn.close()
    return table


def spec(table: str, target_dsn: str, mapping: list[dict]):
    source = (Endpoint("mysql", url=MYSQL_URL), SourceSpec(table=table))
    return spec_for(source, Endpoint("postgresql", url=target_dsn), table,
                    mapping=[MappingEntry.model_validate(m) for m in mapping])


async def test_mysql_text_columns_cast_into_postgresql_types(target_dsn: str) -> None:
    table = await setup(target_dsn, ROWS)
    result = await sync(spec(table, target_dsn, MAPPING))
    assert result.records_written == 3
    conn = await asyncpg.connect(target_dsn)
    try:
        rows = await conn.fetch(f'SELECT id, code, price::text, flag, day::text, '
                                f"to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at, doc::text, "
                                f'amount_text, origin FROM "{table}" ORDER BY id')
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        (1, 42, "12.50", True, "2026-01-02", "2026-01-01 19:04:05.000000", '{"a": [1, "中"]}', "-3.25", "mariadb"),
        (2, 7, "0.01", False, "2026-12-31", "2026-06-30 23:59:59.123456", "[]", "0.00", "mariadb"),
        (3, None, None, None, None, None, None, None, "mariadb"),
    ]


async def test_without_the_cast_text_into_integer_is_refused_naming_the_column(target_dsn: str) -> None:
    table = await setup(target_dsn, ROWS)
    with pytest.raises(ConfigInvalid) as error:
        await sync(spec(table, target_dsn, [m for m in MAPPING if m.get("from") != "code"]))
    assert "的列 code 类型不兼容：string → bigint" in error.value.reason
    conn = await asyncpg.connect(target_dsn)
    try:
        assert await conn.fetchval(f'SELECT count(*) FROM "{table}"') == 0
    finally:
        await conn.close()


async def test_a_value_that_will_not_cast_fails_the_run_naming_the_column(target_dsn: str) -> None:
    table = await setup(target_dsn, [(1, "four", "1", "yes", "2026-01-01", "2026-01-01", "{}", "1", "x")])
    with pytest.raises(SourceFailed) as error:
        await sync(spec(table, target_dsn, MAPPING))
    assert error.value.reason == "字段转换失败：code"

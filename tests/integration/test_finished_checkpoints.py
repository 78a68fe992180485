"""Finished checkpoints are kept for FINISHED_KEPT_DAYS (a resumed run must recognise its finished rows), then
removed when a later run into the same table finishes: the checkpoint table does not grow without bound."""

import sqlite3
from datetime import timedelta

import asyncmy
import asyncpg
import pytest

from service.connectors.sql.target import CHECKPOINTS, FINISHED_KEPT_DAYS
from tests.contract.cases.mysql import MySQLCase
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.cases.sqlite import SQLiteCase
from tests.contract.harness import make_rows, spec_for, sync
from tests.support.builders import unique

AGE = timedelta(days=FINISHED_KEPT_DAYS + 1)


async def keys_left(case, endpoint, table: str) -> set[str]:
    sql = f"SELECT checkpoint_key FROM {CHECKPOINTS} WHERE target_table = '{table}'"
    if isinstance(case, PostgresCase):
        conn = await asyncpg.connect(endpoint.url)
        try:
            return {str(r[0]) for r in await conn.fetch(sql)}
        finally:
            await conn.close()
    if isinstance(case, SQLiteCase):
        with sqlite3.connect(endpoint.url.removeprefix("sqlite://")) as conn:
            return {r[0] for r in conn.execute(sql)}
    return {r[0] for r in await mysql(sql)}


async def age_all(case, endpoint, table: str) -> None:
    days = AGE.days
    if isinstance(case, PostgresCase):
        conn = await asyncpg.connect(endpoint.url)
        try:
            await conn.execute(f"UPDATE {CHECKPOINTS} SET updated_at = now() - interval '{days} days'")
        finally:
            await conn.close()
    elif isinstance(case, SQLiteCase):
        with sqlite3.connect(endpoint.url.removeprefix("sqlite://")) as conn:
            conn.execute(f"UPDATE {CHECKPOINTS} SET updated_at = datetime('now', '-{days} days')")
    else:
        await mysql(f"UPDATE {CHECKPOINTS} SET updated_at = NOW(6) - INTERVAL {days} DAY")


async def mysql(sql: str) -> list:
    conn = await asyncmy.connect(host="127.0.0.1", port=3306, user="root", database="test", autocommit=True)
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(sql)
            return list(await cursor.fetchall() or [])
    finally:
        conn.close()


@pytest.fixture(params=[PostgresCase, MySQLCase, SQLiteCase], ids=["postgresql", "mysql", "sqlite"])
def sql_case(request, tmp_path, target_dsn, broker):
    from tests.contract.harness import Context

    return request.param(Context(pg_dsn=target_dsn, tmp_dir=tmp_path, kafka_bootstrap=broker.bootstrap))


async def test_old_finished_checkpoints_are_removed_by_a_later_finish(sql_case, source_dsn, tmp_path, broker):
    from tests.contract.harness import Context

    reference = PostgresCase(Context(pg_dsn=source_dsn, tmp_dir=tmp_path, kafka_bootstrap=broker.bootstrap))
    table = unique("t")
    source = await reference.seed(table, make_rows(50))
    target = await sql_case.create(table)
    first = spec_for(source, target, table, mode="overwrite")
    await sync(first)
    assert str(first.checkpoint_key) in await keys_left(sql_case, target, table)

    second = spec_for(source, target, table, mode="overwrite")
    await sync(second)
    assert await keys_left(sql_case, target, table) == {str(first.checkpoint_key), str(second.checkpoint_key)}

    await age_all(sql_case, target, table)
    third = spec_for(source, target, table, mode="overwrite")
    await sync(third)
    assert await keys_left(sql_case, target, table) == {str(third.checkpoint_key)}

"""service/db/driver.py against the real state store: a block commits or rolls back as one transaction, and a
connection that may be mid-statement (its block cancelled) never goes back to the pool, while one that only
heard a SQL error does."""

import asyncio

import asyncpg
import pytest

from service.bootstrap import database
from service.config import Settings
from service.db import driver


@pytest.fixture(scope="module")
async def db(state_dsn):
    async with database(Settings(database_url=state_dsn)) as handle:
        async with driver.transaction(handle.sessions) as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS driver_probe (id int PRIMARY KEY, doc jsonb)")
        yield handle


async def rows(db) -> list[tuple[int, object]]:
    async with driver.transaction(db.sessions) as conn:
        return [(row["id"], row["doc"]) for row in await conn.fetch("SELECT id, doc FROM driver_probe ORDER BY id")]


async def backend(db) -> int:
    async with driver.transaction(db.sessions) as conn:
        return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def test_a_block_commits_as_one_transaction_with_json_as_the_orm_writes_it(db):
    async with driver.transaction(db.sessions) as conn:
        await conn.execute("DELETE FROM driver_probe")
        await conn.execute("INSERT INTO driver_probe VALUES (1, $1::jsonb)", '{"a": [1, "二"]}')
    assert await rows(db) == [(1, {"a": [1, "二"]})]


async def test_a_block_that_raises_leaves_nothing_behind(db):
    async with driver.transaction(db.sessions) as conn:
        await conn.execute("DELETE FROM driver_probe")
    with pytest.raises(asyncpg.UniqueViolationError):
        async with driver.transaction(db.sessions) as conn:
            await conn.execute("INSERT INTO driver_probe VALUES (2, NULL)")
            await conn.execute("INSERT INTO driver_probe VALUES (2, NULL)")
    assert await rows(db) == []


async def test_a_sql_error_keeps_the_connection_and_a_cancelled_block_drops_it(db):
    first = await backend(db)
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with driver.transaction(db.sessions) as conn:
            await conn.fetchval("SELECT 1 / 0")
    assert await backend(db) == first, "a SQL error leaves the connection healthy and pooled"

    async def slow() -> None:
        async with driver.transaction(db.sessions) as conn:
            await conn.execute("SELECT pg_sleep(10)")

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await backend(db) != first, "a connection cancelled mid-statement is not handed out again"
    async with driver.transaction(db.sessions) as conn:
        assert await conn.fetchval("SELECT 1") == 1

"""docs/spec.md §7 "Query sources" on the real PostgreSQL and MariaDB: a query source cannot write, cannot change a
session that a later run would use, cannot write files on the database server, and runs one statement.

The finding: `set_config('default_transaction_read_only','off',false)` in one run carried over through a
parked connection, and a later run committed a DELETE through a function; a MySQL `INTO OUTFILE` wrote a
file on the database server. Each attack below runs as a real sync through the engine.
"""

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from schemas.api import SourceSpec
from schemas.events import ErrorCode
from schemas.messages import SESSION_CHANGED, WRITE_REFUSED
from service.sync.errors import SyncError
from service.sync.model import Endpoint
from tests.contract.cases.mysql import mysql_execute, mysql_fetch
from tests.contract.harness import spec_for, sync

MYSQL_URL = "mysql://root@127.0.0.1:3306/test"


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def pg(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def run_query(source: Endpoint, query: str, target_dsn: str, cursor: str | None = None) -> tuple[int, list]:
    """Sync `query` into a new PostgreSQL table; the rows written and what the target holds. With a
    `cursor` column the run is incremental, so it also runs statements outside the cursor (its window)."""
    table = _name("q")
    result = await sync(spec_for((source, SourceSpec(query=query, cursor_column=cursor)),
                                 Endpoint("postgresql", url=target_dsn), table, create=True))
    async with pg(target_dsn) as conn:
        rows = [tuple(r) for r in await conn.fetch(f'SELECT * FROM "{table}"')]
    return result.records_written, rows


async def refused(source: Endpoint, query: str, target_dsn: str, cursor: str | None = None) -> SyncError:
    with pytest.raises(SyncError) as failed:
        await run_query(source, query, target_dsn, cursor)
    assert failed.value.code == ErrorCode.ACCESS_DENIED, failed.value
    return failed.value


@pytest.fixture
async def victims(source_dsn: str) -> AsyncIterator[str]:
    """A table of 5 rows and two functions an attacker could have left in their own database: one that
    switches the session to read-write, one that deletes every row."""
    table = _name("victims")
    async with pg(source_dsn) as conn:
        await conn.execute(f"""
            CREATE TABLE {table} (id int PRIMARY KEY);
            INSERT INTO {table} SELECT generate_series(1, 5);
            CREATE FUNCTION {table}_writable() RETURNS text LANGUAGE sql
                AS $$ SELECT set_config('default_transaction_read_only', 'off', false) $$;
            CREATE FUNCTION {table}_wipe() RETURNS bigint LANGUAGE plpgsql
                AS $$ BEGIN DELETE FROM {table}; RETURN 0; END $$;
        """)
    yield table
    async with pg(source_dsn) as conn:
        await conn.execute(f"DROP TABLE {table}; DROP FUNCTION {table}_writable(); DROP FUNCTION {table}_wipe()")


async def count(source_dsn: str, table: str) -> int:
    async with pg(source_dsn) as conn:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


async def test_a_session_made_writable_in_one_run_cannot_delete_in_the_next(source_dsn, target_dsn, victims):
    source = Endpoint("postgresql", url=source_dsn)
    # Through a function, so the text guard sees nothing: the session check fails the run.
    first = await refused(source, f"SELECT {victims}_writable() AS x", target_dsn, cursor="x")
    assert first.reason == SESSION_CHANGED
    # Directly: the guard refuses it before anything connects.
    await refused(source, "SELECT set_config('default_transaction_read_only', 'off', false) AS x", target_dsn)
    second = await refused(source, f"SELECT {victims}_wipe() AS n", target_dsn, cursor="n")
    assert second.reason == WRITE_REFUSED
    assert await count(source_dsn, victims) == 5


async def test_every_run_reads_on_a_connection_of_its_own(source_dsn, target_dsn):
    source = Endpoint("postgresql", url=source_dsn)
    (_, [(first,)]), (_, [(second,)]) = [await run_query(source, "SELECT pg_backend_pid() AS pid", target_dsn)
                                         for _ in range(2)]
    assert first != second
    async with pg(source_dsn) as conn:
        alive = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])",
                                    [first, second])
    assert alive == 0, "a source connection outlived its run"


@pytest.mark.parametrize("cursor", [None, "n"])
async def test_a_function_that_writes_fails_on_the_read_only_transaction(source_dsn, target_dsn, victims, cursor):
    error = await refused(Endpoint("postgresql", url=source_dsn), f"SELECT {victims}_wipe() AS n", target_dsn, cursor)
    assert error.reason == WRITE_REFUSED
    assert await count(source_dsn, victims) == 5


@pytest.mark.parametrize("query", [
    "SELECT 1 AS x; DELETE FROM {t}",
    "SELECT 1 AS x) AS q; DELETE FROM {t}; --",
    "WITH gone AS (DELETE FROM {t} RETURNING id) SELECT id FROM gone",
    "SELECT pg_read_file('/etc/hostname') AS x",
    "SELECT * FROM pg_ls_dir('.') AS x",
    "SELECT lo_import('/etc/hostname') AS x",
    "COPY (SELECT 1) TO PROGRAM 'true'",
    "DELETE FROM {t}",
])
async def test_postgresql_statements_that_write_or_read_files_are_refused(source_dsn, target_dsn, victims, query):
    await refused(Endpoint("postgresql", url=source_dsn), query.format(t=victims), target_dsn)
    assert await count(source_dsn, victims) == 5


async def test_quotes_and_comments_do_not_fool_the_guard(source_dsn, target_dsn):
    source = Endpoint("postgresql", url=source_dsn)
    assert await run_query(source, "SELECT 'set_config' AS x -- DELETE; a trailing comment", target_dsn) == (
        1, [("set_config",)])
    assert await run_query(source, "SELECT $$ ; DELETE $$ AS x /* INTO OUTFILE */;", target_dsn) == (
        1, [(" ; DELETE ",)])


# MariaDB


@pytest.fixture
async def my_victims() -> AsyncIterator[str]:
    table = _name("victims")
    await mysql_execute(MYSQL_URL, f"CREATE TABLE `{table}` (id INT PRIMARY KEY) ENGINE=InnoDB")
    await mysql_execute(MYSQL_URL, f"INSERT INTO `{table}` VALUES (1), (2), (3)")
    await mysql_execute(MYSQL_URL, f"CREATE FUNCTION `{table}_wipe`() RETURNS INT MODIFIES SQL DATA "
                                   f"BEGIN DELETE FROM `{table}`; RETURN 0; END")
    yield table
    await mysql_execute(MYSQL_URL, f"DROP FUNCTION `{table}_wipe`")
    await mysql_execute(MYSQL_URL, f"DROP TABLE `{table}`")


async def my_count(table: str) -> int:
    return int((await mysql_fetch(MYSQL_URL, f"SELECT count(*) AS n FROM `{table}`"))[0]["n"])


@pytest.fixture
def outfile() -> Iterator[Path]:
    """A path the MariaDB server (on this machine) could write; removed if it ever appears."""
    path = Path("/tmp") / _name("bs_outfile")
    yield path
    with contextlib.suppress(OSError):
        os.unlink(path)


@pytest.mark.parametrize("query", [
    "SELECT 1 AS x INTO OUTFILE '{f}'",
    "SELECT 1 AS x INTO DUMPFILE '{f}'",
    "SELECT 1 AS x) AS q INTO OUTFILE '{f}' #",
    "SELECT 1 AS x /*! INTO OUTFILE '{f}' */",
])
async def test_mysql_into_outfile_is_refused_and_writes_nothing(target_dsn, outfile, query):
    await refused(Endpoint("mysql", url=MYSQL_URL), query.format(f=outfile), target_dsn)
    assert not outfile.exists()


@pytest.mark.parametrize("query", [
    "SELECT 1 AS x; DELETE FROM `{t}`",
    "SELECT 1 AS x) AS q; SET SESSION TRANSACTION READ WRITE; DELETE FROM `{t}`; #",
    "SELECT @v := 1 AS x",
    "SELECT id FROM `{t}` FOR UPDATE",
    "SELECT load_file('/etc/hostname') AS x",
])
async def test_mysql_several_statements_and_session_changes_are_refused(target_dsn, my_victims, query):
    await refused(Endpoint("mysql", url=MYSQL_URL), query.format(t=my_victims), target_dsn)
    assert await my_count(my_victims) == 3


async def test_a_mysql_function_that_writes_fails_on_the_read_only_transaction(target_dsn, my_victims):
    error = await refused(Endpoint("mysql", url=MYSQL_URL), f"SELECT `{my_victims}_wipe`() AS n", target_dsn)
    assert error.reason == WRITE_REFUSED
    assert await my_count(my_victims) == 3


async def test_mysql_quotes_and_comments_do_not_fool_the_guard(target_dsn):
    source = Endpoint("mysql", url=MYSQL_URL)
    assert await run_query(source, "SELECT 'INTO OUTFILE' AS x # a trailing comment", target_dsn) == (
        1, [("INTO OUTFILE",)])


async def test_a_reused_target_connection_starts_from_a_clean_session(target_dsn):
    """Targets still park connections (a source never does): a setting a trigger or function changed in one
    run is reset before the next run gets the connection (all of `DISCARD ALL` but the driver's prepared
    statements), startup settings kept."""
    from service.connectors.postgresql.connection import close, connect

    endpoint = Endpoint("postgresql", url=target_dsn)
    conn = await connect(endpoint, "target", 5)
    pid = conn.get_server_pid()
    await conn.execute("SELECT set_config('search_path', 'elsewhere', false); CREATE TEMP TABLE leftover (a int)")
    assert await conn.fetchval("SELECT $1::int + 1", 1) == 2  # prepared and cached by the driver
    await close(conn, clean=True)
    conn = await connect(endpoint, "target", 5)
    try:
        assert conn.get_server_pid() == pid
        # the driver's prepared statements survive the reset, so the next run does not prepare them again
        kept = "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::int%'"
        assert await conn.fetchval(kept) == 1
        assert await conn.fetchval("SHOW search_path") == '"$user", public'
        assert await conn.fetchval("SELECT to_regclass('pg_temp.leftover')") is None
        assert await conn.fetchval("SHOW temp_buffers") == "64MB"
    finally:
        await close(conn, clean=False)


async def test_a_parked_connection_whose_reset_failed_is_never_reused(target_dsn):
    """The reset runs in the background after a run (off its path); a connection whose reset did not
    complete (here: its backend was terminated while parked) is dropped, and the next run gets a new one."""
    from service.connectors.postgresql.connection import close, connect

    endpoint = Endpoint("postgresql", url=target_dsn)
    conn = await connect(endpoint, "target", 5)
    pid = conn.get_server_pid()
    async with pg(target_dsn) as admin:  # the backend dies before the reset reaches it
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    await close(conn, clean=True)
    conn = await connect(endpoint, "target", 5)
    try:
        assert conn.get_server_pid() != pid
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await close(conn, clean=False)


async def test_table_sources_reuse_connections_that_no_query_ever_touched(source_dsn, target_dsn):
    """A table source runs only the service's own SQL, so its connection is parked for the next table run
    (a new backend costs ~3 ms and a cold catalog cache); a query source's never is, and never gets one."""
    view = _name("pid")
    async with pg(source_dsn) as conn:
        await conn.execute(f"CREATE VIEW {view} AS SELECT pg_backend_pid() AS pid")
    source = Endpoint("postgresql", url=source_dsn)

    async def table_run() -> int:
        table = _name("t")
        await sync(spec_for((source, SourceSpec(table=view)), Endpoint("postgresql", url=target_dsn), table,
                            create=True))
        async with pg(target_dsn) as conn:
            return int(await conn.fetchval(f'SELECT pid FROM "{table}"'))

    first, second = await table_run(), await table_run()
    _, [(query_pid,)] = await run_query(source, "SELECT pg_backend_pid() AS pid", target_dsn)
    third = await table_run()
    assert first == second == third
    assert query_pid != first
    async with pg(source_dsn) as conn:
        assert await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", query_pid) == 0
        await conn.execute(f"DROP VIEW {view}")

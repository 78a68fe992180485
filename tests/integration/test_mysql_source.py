"""MariaDB source paths beyond the contract: a read-only query streamed and resumed after a crash by
skipping the rows already written, a key-less table, keyset pages over a key with gaps, and a source
session that refuses writes."""

import pytest

from schemas.api import SourceSpec
from service.connectors.mysql.connection import connect, fetch
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.model import Endpoint
from tests.contract.cases.mysql import MySQLCase, mysql_execute
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.harness import FIELDS, Context, Crash, Recorder, make_rows, normalized, spec_for, sync
from tests.support.builders import unique

URL = "mysql://root@127.0.0.1:3306/test"


@pytest.fixture
def mysql(tmp_path) -> MySQLCase:
    return MySQLCase(Context(pg_dsn="", tmp_dir=tmp_path, kafka_bootstrap=""))


@pytest.fixture
def reference(target_dsn, tmp_path) -> PostgresCase:
    return PostgresCase(Context(pg_dsn=target_dsn, tmp_dir=tmp_path, kafka_bootstrap=""))


async def test_a_query_streams_and_resumes_after_a_crash(mysql, reference) -> None:
    rows = make_rows(2600)
    table = unique("q")
    endpoint, _ = await mysql.seed(table, rows)
    target = await reference.create(table)
    spec = spec_for((endpoint, SourceSpec(query=f"SELECT * FROM `{table}` WHERE id % 2 = 0")), target, table,
                    chunk_size=400)
    with pytest.raises(Crash):
        await sync(spec, Recorder(crash_after=2))
    resumed = Recorder()
    result = await sync(spec, resumed)
    assert [u.chunk for u in resumed.updates] == [3, 4]
    assert result.records_written == 1300
    even = [r for r in rows if r["id"] % 2 == 0]
    assert normalized(await reference.read(target, table), FIELDS) == normalized(even, FIELDS)


async def test_a_keyless_table_and_a_key_with_gaps(mysql, reference) -> None:
    rows = [r for r in make_rows(900) if r["id"] % 3 != 0]
    table = unique("gaps")
    endpoint, spec = await mysql.seed(table, rows)
    target = await reference.create(table)
    result = await sync(spec_for((endpoint, spec), target, table, chunk_size=250))
    assert (result.records_written, result.chunks) == (600, 3)

    keyless = unique("nokey")
    await mysql_execute(URL, f"CREATE TABLE `{keyless}` AS SELECT * FROM `{table}`")
    target2 = await reference.create(keyless)
    result = await sync(spec_for((endpoint, SourceSpec(table=keyless)), target2, keyless, chunk_size=250))
    assert result.records_written == 600
    assert normalized(await reference.read(target2, keyless), FIELDS) == normalized(rows, FIELDS)


async def test_the_source_session_is_read_only() -> None:
    conn = await connect(Endpoint("mysql", url=URL), "source", 2)
    try:
        with pytest.raises(Exception) as error:
            await fetch(conn, "CREATE TABLE should_not_exist (id INT)")
        assert "READ ONLY" in str(error.value).upper() or "read-only" in str(error.value).lower()
        await fetch(conn, "SELECT 1")
    finally:
        conn.close()


async def test_a_missing_cursor_column_and_a_bad_query_are_named(mysql, reference) -> None:
    table = unique("cur")
    endpoint, _ = await mysql.seed(table, make_rows(3))
    target = await reference.create(table)
    with pytest.raises(ConfigInvalid) as error:
        await sync(spec_for((endpoint, SourceSpec(table=table, cursor_column="nope")), target, table))
    assert error.value.reason == "源表缺少游标列：nope"
    with pytest.raises(SourceFailed):
        await sync(spec_for((endpoint, SourceSpec(query="SELECT no_such_column FROM dual")), target, table))

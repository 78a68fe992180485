"""SQLite specifics: a missing file as source names the file (`源表不存在：<file>`) and is never created;
a target creates its file; a query source; the connection test endpoint answers like a sync."""

from pathlib import Path

import pytest

from schemas.api import SourceSpec
from service.sync.errors import TableMissing, TargetFailed
from service.sync.model import Endpoint
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.cases.sqlite import SQLiteCase, sqlite_rows
from tests.contract.harness import FIELDS, Context, make_rows, normalized, spec_for, sync
from tests.support.api import api_client, api_settings, asyncpg_url, create_connection
from tests.support.builders import unique
from tests.support.policy import policy_for


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        yield client


@pytest.fixture
def reference(target_dsn, tmp_path) -> PostgresCase:
    return PostgresCase(Context(pg_dsn=target_dsn, tmp_dir=tmp_path, kafka_bootstrap=""))


async def test_a_missing_file_as_source_is_named_and_not_created(reference, tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    table = unique("t")
    target = await reference.create(table)
    with pytest.raises(TableMissing) as error:
        source = Endpoint("sqlite", url=f"sqlite://{path}", policy=policy_for())
        await sync(spec_for((source, SourceSpec(table=table)), target, table))
    assert error.value.reason == f"源表不存在：{path}"
    assert not path.exists()


async def test_a_target_creates_its_file_and_table(reference, tmp_path: Path) -> None:
    rows = make_rows(300)
    table = unique("t")
    source = await reference.seed(table, rows)
    path = tmp_path / "new" / "made.db"
    path.parent.mkdir()
    target = Endpoint("sqlite", url=f"sqlite://{path}", policy=policy_for())
    await sync(spec_for(source, target, table, create=True, chunk_size=100))
    assert normalized(sqlite_rows(path, f'SELECT * FROM "{table}"'), FIELDS) == normalized(rows, FIELDS)


async def test_a_target_in_a_missing_folder_fails_on_the_target_side(reference, tmp_path: Path) -> None:
    table = unique("t")
    source = await reference.seed(table, make_rows(3))
    with pytest.raises(TargetFailed) as error:
        target = Endpoint("sqlite", url=f"sqlite://{tmp_path}/no/such/dir.db", policy=policy_for())
        await sync(spec_for(source, target, table))
    assert error.value.reason == "无法打开数据库文件"


async def test_a_query_source_streams_and_resumes_by_offset(reference, tmp_path: Path) -> None:
    case = SQLiteCase(Context(pg_dsn="", tmp_dir=tmp_path, kafka_bootstrap=""))
    rows = make_rows(250)
    table = unique("q")
    endpoint, _ = await case.seed(table, rows)
    target = await reference.create(table)
    query = SourceSpec(query=f'SELECT * FROM "{table}" WHERE id % 2 = 0')
    result = await sync(spec_for((endpoint, query), target, table, chunk_size=40))
    assert result.records_written == 125
    even = [r for r in rows if r["id"] % 2 == 0]
    assert normalized(await reference.read(target, table), FIELDS) == normalized(even, FIELDS)


async def test_the_connection_test_endpoint_answers_like_a_sync(client, tmp_path: Path) -> None:
    case = SQLiteCase(Context(pg_dsn="", tmp_dir=tmp_path, kafka_bootstrap=""))
    await case.seed(unique("t"), [])
    present = await create_connection(client, type="sqlite", url=f"sqlite://{case.path}")
    response = await client.post(f"/integration/connection/{present['id']}/test")
    assert response.json() == {"code": 200, "message": "连接成功", "data": None}
    absent = await create_connection(client, type="sqlite", url=f"sqlite://{tmp_path}/absent.db")
    response = await client.post(f"/integration/connection/{absent['id']}/test")
    assert response.status_code == 400
    assert response.json()["message"] == f"连接失败：源表不存在：{tmp_path}/absent.db"

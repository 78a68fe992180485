"""MariaDB errors mapped at the connector boundary, through a sync and through the connection test
endpoint: wrong password (a real user with a password; root may use unix_socket auth), refused port,
silent host (connect timeout), missing table, missing database. No password in any message."""

import time
import uuid

import pytest

from schemas.api import SourceSpec
from service.sync.errors import AuthFailed, ConnectRefused, ConnectTimeout, SourceFailed, TableMissing
from service.sync.model import Endpoint
from tests.contract.cases.mysql import ddl, mysql_execute
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.harness import FIELDS, Context, spec_for, sync
from tests.support.api import DB_PASSWORD, api_client, api_settings, asyncpg_url, create_connection
from tests.support.builders import unique
from tests.support.loopback import closed_port, silent_server

ROOT_URL = "mysql://root@127.0.0.1:3306/test"


@pytest.fixture(scope="module")
async def mysql_user():
    """A MariaDB user with a password, dropped afterwards."""
    name = f"bs_{uuid.uuid4().hex[:8]}"
    await mysql_execute(ROOT_URL, f"CREATE USER '{name}'@'%' IDENTIFIED BY '{DB_PASSWORD}'")
    await mysql_execute(ROOT_URL, f"GRANT ALL ON test.* TO '{name}'@'%'")
    yield name
    await mysql_execute(ROOT_URL, f"DROP USER '{name}'@'%'")


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        yield client


@pytest.fixture
async def reference(target_dsn, tmp_path):
    return PostgresCase(Context(pg_dsn=target_dsn, tmp_dir=tmp_path, kafka_bootstrap=""))


async def failing_sync(endpoint: Endpoint, reference, table: str = "anything") -> BaseException:
    target_table = unique("tgt")
    target = await reference.create(target_table)
    with pytest.raises(Exception) as error:
        await sync(spec_for((endpoint, SourceSpec(table=table)), target, target_table), connect_timeout=1.0)
    return error.value


async def test_a_wrong_password_is_auth_failed_without_the_password(mysql_user, reference) -> None:
    error = await failing_sync(Endpoint("mysql", url=f"mysql://{mysql_user}:wrong-{DB_PASSWORD}@127.0.0.1/test"),
                               reference)
    assert isinstance(error, AuthFailed) and error.reason == "认证失败"
    assert DB_PASSWORD not in str(error) and DB_PASSWORD not in repr(error)


async def test_the_right_password_reads_the_table(mysql_user, reference) -> None:
    table = unique("ok")
    await mysql_execute(ROOT_URL, ddl(table, FIELDS))
    await mysql_execute(ROOT_URL, f"INSERT INTO `{table}` (id, name) VALUES (1, '好')")
    target = await reference.create(table)
    source = (Endpoint("mysql", url=f"mysql://{mysql_user}:{DB_PASSWORD}@127.0.0.1:3306/test"),
              SourceSpec(table=table))
    assert (await sync(spec_for(source, target, table))).records_written == 1


async def test_a_refused_port_and_a_missing_table_and_database(reference) -> None:
    refused = await failing_sync(Endpoint("mysql", url=f"mysql://root@127.0.0.1:{closed_port()}/test"), reference)
    assert isinstance(refused, ConnectRefused) and refused.reason == "连接被拒绝"
    missing = await failing_sync(Endpoint("mysql", url=ROOT_URL), reference, table="no_such_table_here")
    assert isinstance(missing, TableMissing) and missing.reason == "源表不存在：no_such_table_here"
    no_db = await failing_sync(Endpoint("mysql", url="mysql://root@127.0.0.1:3306/no_such_db_bs"), reference)
    assert isinstance(no_db, SourceFailed) and no_db.reason == "数据库不存在"


async def test_a_target_side_wrong_password_names_the_target(mysql_user, reference) -> None:
    table = unique("src")
    source = await reference.seed(table, [])
    target = Endpoint("mysql", url=f"mysql://{mysql_user}:nope@127.0.0.1:3306/test")
    with pytest.raises(AuthFailed) as error:
        await sync(spec_for(source, target, table))
    assert error.value.reason == "目标库认证失败"


async def test_the_connection_test_endpoint_answers_like_a_sync(client, mysql_user) -> None:
    async def check(url: str) -> tuple[float, dict]:
        created = await create_connection(client, type="mysql", url=url)
        started = time.monotonic()
        response = await client.post(f"/integration/connection/{created['id']}/test")
        return time.monotonic() - started, response.json()

    _, ok = await check(f"mysql://{mysql_user}:{DB_PASSWORD}@127.0.0.1:3306/test")
    assert ok == {"code": 200, "message": "连接成功", "data": None}
    _, wrong = await check(f"mysql://{mysql_user}:x{DB_PASSWORD}@127.0.0.1:3306/test")
    assert wrong["message"] == "连接失败：认证失败"
    _, refused = await check(f"mysql://root:{DB_PASSWORD}@127.0.0.1:{closed_port()}/test")
    assert refused["message"] == "连接失败：连接被拒绝"
    with silent_server() as port:
        elapsed, silent = await check(f"mysql://root:{DB_PASSWORD}@127.0.0.1:{port}/test")
    assert silent["message"] == "连接失败：连接超时"
    assert elapsed < 3.5


async def test_an_unreachable_source_times_out(reference) -> None:
    with silent_server() as port:
        started = time.monotonic()
        error = await failing_sync(Endpoint("mysql", url=f"mysql://root@127.0.0.1:{port}/test"), reference)
    assert isinstance(error, ConnectTimeout) and time.monotonic() - started < 2.5

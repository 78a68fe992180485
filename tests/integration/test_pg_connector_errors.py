"""Driver errors become the seed's messages at the connector boundary, through execute() and
test_connection(), against real PostgreSQL and a loopback server that never answers."""

import time

import pytest

from service.connectors import registry
from service.connectors.registry import REGISTRY
from service.sync.engine import execute
from service.sync.errors import (
    AuthFailed,
    ConfigInvalid,
    ConnectRefused,
    ConnectTimeout,
    SyncError,
    TableMissing,
)
from service.sync.model import Endpoint
from tests.integration.test_engine_sync import Recorder, pg, source_table, spec_for, target_like
from tests.support.loopback import closed_port, silent_server

TIMEOUT = 0.5
MARGIN = 0.5


async def test_silent_source_times_out_within_the_connect_timeout(target_dsn: str) -> None:
    tgt = await target_like(target_dsn)
    with silent_server() as port:
        spec = spec_for(f"postgresql://u:pw@127.0.0.1:{port}/db", target_dsn, tgt, table="anything")
        started = time.monotonic()
        with pytest.raises(ConnectTimeout) as caught:
            await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=TIMEOUT)
        elapsed = time.monotonic() - started

    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + MARGIN
    assert (caught.value.reason, caught.value.side, caught.value.code) == ("连接超时", "source", "SOURCE_TIMEOUT")


async def test_silent_target_times_out_as_the_target(source_dsn: str) -> None:
    src = await source_table(source_dsn, 5)
    with silent_server() as port:
        spec = spec_for(source_dsn, f"postgresql://127.0.0.1:{port}/db", "t", table=src)
        with pytest.raises(ConnectTimeout) as caught:
            await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=TIMEOUT)
    assert (caught.value.reason, caught.value.code) == ("目标库连接超时", "TARGET_TIMEOUT")


async def test_connection_test_maps_timeout_refusal_and_unknown_user() -> None:
    with silent_server() as port:
        started = time.monotonic()
        with pytest.raises(ConnectTimeout):
            await registry.test_connection(Endpoint("postgresql", url=f"postgresql://127.0.0.1:{port}/x"), TIMEOUT)
        assert time.monotonic() - started < TIMEOUT + MARGIN
    with pytest.raises(ConnectRefused, match="连接被拒绝"):
        await registry.test_connection(Endpoint("postgresql", url=f"postgresql://127.0.0.1:{closed_port()}/x"), 2)
    # pg_hba.conf here trusts 127.0.0.1, so a wrong password is accepted; an unknown role is refused
    # (28000) and stands in for bad credentials.
    url = "postgresql://no_such_user:s3cret-pw@127.0.0.1:5432/postgres"
    with pytest.raises(AuthFailed, match="认证失败") as caught:
        await registry.test_connection(Endpoint("postgresql", url=url), 2)
    assert "s3cret-pw" not in str(caught.value) and "s3cret-pw" not in repr(caught.value.detail)
    await registry.test_connection(Endpoint("postgresql", url="postgresql://postgres@127.0.0.1:5432/postgres"), 2)


async def test_missing_tables_name_the_table_and_the_side(source_dsn: str, target_dsn: str) -> None:
    tgt = await target_like(target_dsn)
    with pytest.raises(TableMissing) as caught:
        await execute(spec_for(source_dsn, target_dsn, tgt, table="no_such_source"), Recorder(),
                      connectors=REGISTRY, connect_timeout=2)
    assert (caught.value.reason, caught.value.code) == ("源表不存在：no_such_source", "SOURCE_NOT_FOUND")

    src = await source_table(source_dsn, 5)
    with pytest.raises(TableMissing) as caught:
        await execute(spec_for(source_dsn, target_dsn, "no_such_target", table=src), Recorder(),
                      connectors=REGISTRY, connect_timeout=2)
    assert (caught.value.reason, caught.value.code) == ("目标表不存在：no_such_target", "TARGET_ERROR")

    with pytest.raises(TableMissing, match="源表不存在：ghost"):
        await execute(spec_for(source_dsn, target_dsn, tgt, query="SELECT * FROM ghost"), Recorder(),
                      connectors=REGISTRY, connect_timeout=2)


async def test_unsupported_type_and_unknown_mapped_column_are_config_errors(
    source_dsn: str, target_dsn: str
) -> None:
    with pytest.raises(ConfigInvalid, match="暂不支持的连接类型：oracle"):
        await registry.test_connection(Endpoint("oracle", url="oracle://root@127.0.0.1/x"), 1)
    src = await source_table(source_dsn, 5)
    tgt = await target_like(target_dsn)
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mapping=[{"from": "name", "to": "nickname"}])
    with pytest.raises(ConfigInvalid, match="缺少列：nickname"):
        await execute(spec, Recorder(),
                      connectors=REGISTRY, connect_timeout=2)


async def test_terminal_target_error_is_not_retried(
    source_dsn: str, target_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    src = await source_table(source_dsn, 5)
    tgt = await target_like(target_dsn)
    spec = spec_for(source_dsn, target_dsn, tgt, table=src)
    async with pg(target_dsn) as conn:
        await conn.execute(f"ALTER TABLE {tgt} ADD CONSTRAINT small CHECK (id < 3)")
    with pytest.raises(SyncError) as caught:
        await execute(spec, Recorder(),
                      connectors=REGISTRY, connect_timeout=2)
    assert caught.value.code == "TARGET_ERROR" and "23514" in str(caught.value)
    assert not [r for r in caplog.records if "transient error" in r.getMessage()]

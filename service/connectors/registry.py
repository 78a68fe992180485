"""Builds a source or target for an Endpoint; the one place that knows which connection types exist."""

from schemas.api import SourceSpec, TargetSpec
from service.connectors.base import Source, Target
from service.connectors.pg_source import PostgresSource
from service.connectors.pg_target import PostgresTarget
from service.connectors.postgresql import boundary, close, connect
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint


def _unsupported(endpoint: Endpoint) -> ConfigInvalid:
    return ConfigInvalid(f"暂不支持的连接类型：{endpoint.type}")


def source_for(endpoint: Endpoint, spec: SourceSpec, connect_timeout: float) -> Source:
    """An unopened source; enter it (`async with`) to connect."""
    if endpoint.type == "postgresql":
        return PostgresSource(endpoint, spec, connect_timeout)
    raise _unsupported(endpoint)


def target_for(endpoint: Endpoint, spec: TargetSpec, connect_timeout: float) -> Target:
    """An unopened target; enter it (`async with`) to connect."""
    if endpoint.type == "postgresql":
        return PostgresTarget(endpoint, spec, connect_timeout)
    raise _unsupported(endpoint)


async def test_connection(endpoint: Endpoint, connect_timeout: float) -> None:
    """Connect and run a trivial query, raising the same SyncErrors a sync would (as the source side)."""
    if endpoint.type != "postgresql":
        raise _unsupported(endpoint)
    conn = await connect(endpoint, "source", connect_timeout)
    try:
        with boundary("source"):
            await conn.fetchval("SELECT 1", timeout=connect_timeout)
    finally:
        await close(conn, clean=True)

"""Builds a source or target for an Endpoint; the one place that knows which connection types exist.

Each kind registers its source and target classes (either may be None: not supported), the write
modes its target supports, its connectivity check, and (file kinds) the local paths a connection names,
which the file policy must allow before the connection is stored. Adding a system is one entry here.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from schemas.api import SourceSpec, TargetSpec
from service.connectors.base import Source, Target
from service.connectors.csv.source import CsvSource, CsvTarget
from service.connectors.csv.source import check_connection as csv_check
from service.connectors.files.options import declared_paths as file_paths
from service.connectors.http.client import check_connection as http_check
from service.connectors.http.source import HttpSource
from service.connectors.jsonl.source import JsonlSource, JsonlTarget
from service.connectors.jsonl.source import check_connection as jsonl_check
from service.connectors.kafka.client import check_connection as kafka_check
from service.connectors.kafka.source import KafkaSource
from service.connectors.kafka.target import KafkaTarget
from service.connectors.mysql.connection import check_connection as mysql_check
from service.connectors.mysql.source import MySQLSource
from service.connectors.mysql.target import MySQLTarget
from service.connectors.postgresql.source import PostgresSource
from service.connectors.postgresql.target import PostgresTarget
from service.connectors.postgresql.connection import check_connection as postgres_check
from service.connectors.sqlite.connection import check_connection as sqlite_check
from service.connectors.sqlite.connection import declared_paths as sqlite_paths
from service.connectors.sqlite.source import SQLiteSource
from service.connectors.sqlite.target import SQLiteTarget
from service.security.policy import AccessPolicy
from service.sync.errors import AccessDenied, ConfigInvalid
from service.sync.model import Endpoint


@dataclass(frozen=True)
class Kind:
    source: Callable[[Endpoint, SourceSpec, float], Source] | None
    target: Callable[[Endpoint, TargetSpec, float], Target] | None
    target_modes: frozenset[str]
    check: Callable[[Endpoint, float], Awaitable[None]]
    paths: Callable[[Endpoint], list[str]] | None = None
    """The local files a connection of this kind names (None: it names none)."""


KINDS: dict[str, Kind] = {
    "postgresql": Kind(PostgresSource, PostgresTarget, frozenset({"append", "overwrite", "upsert"}), postgres_check),
    "sqlite": Kind(SQLiteSource, SQLiteTarget, frozenset({"append", "overwrite", "upsert"}), sqlite_check,
                   sqlite_paths),
    "mysql": Kind(MySQLSource, MySQLTarget, frozenset({"append", "overwrite", "upsert"}), mysql_check),
    "http": Kind(HttpSource, None, frozenset(), http_check),
    "kafka": Kind(KafkaSource, KafkaTarget, frozenset({"append"}), kafka_check),
    "csv": Kind(CsvSource, CsvTarget, frozenset({"append", "overwrite"}), csv_check, file_paths),
    "jsonl": Kind(JsonlSource, JsonlTarget, frozenset({"append", "overwrite"}), jsonl_check, file_paths),
}


def _kind(endpoint: Endpoint) -> Kind:
    kind = KINDS.get(endpoint.type)
    if kind is None:
        raise ConfigInvalid(f"暂不支持的连接类型：{endpoint.type}")
    return kind


def source_for(endpoint: Endpoint, spec: SourceSpec, connect_timeout: float) -> Source:
    """An unopened source; enter it (`async with`) to connect."""
    factory = _kind(endpoint).source
    if factory is None:
        raise ConfigInvalid(f"连接类型不能作为源：{endpoint.type}")
    return factory(endpoint, spec, connect_timeout)


def target_for(endpoint: Endpoint, spec: TargetSpec, connect_timeout: float) -> Target:
    """An unopened target; enter it (`async with`) to connect."""
    kind = _kind(endpoint)
    if kind.target is None:
        raise ConfigInvalid(f"连接类型不能作为目标：{endpoint.type}")
    if spec.mode.value not in kind.target_modes:
        raise ConfigInvalid(f"目标类型 {endpoint.type} 不支持 {spec.mode.value} 模式")
    return kind.target(endpoint, spec, connect_timeout)


def check_batch(source_type: str, target_type: str, mode: str, *, cursor: bool = False) -> str | None:
    """Why a batch with these connection types, write mode and (with `cursor`) incremental reads cannot
    run, or None when it can."""
    source, target = KINDS.get(source_type), KINDS.get(target_type)
    if source is None or target is None:
        return f"暂不支持的连接类型：{source_type if source is None else target_type}"
    if source.source is None:
        return f"连接类型不能作为源：{source_type}"
    if target.target is None:
        return f"连接类型不能作为目标：{target_type}"
    if mode not in target.target_modes:
        return f"目标类型 {target_type} 不支持 {mode} 模式"
    capabilities = getattr(source.source, "capabilities", None)
    if cursor and (capabilities is None or not capabilities.cursor):
        return f"源类型 {source_type} 不支持增量同步（cursorColumn）"
    return None


def check_paths(kind: str, url: str | None, params: dict[str, Any] | None, policy: AccessPolicy) -> str | None:
    """Why the file policy refuses a connection of `kind` to be stored (`文件路径不在允许的目录中`), or None.

    The same paths are resolved again whenever a run opens them; this check refuses them up front.
    """
    known = KINDS.get(kind)
    if known is None or known.paths is None:
        return None
    endpoint = Endpoint(type=kind, url=url, params=dict(params or {}), policy=policy)
    try:
        for path in known.paths(endpoint):
            policy.files.resolve(path)
    except AccessDenied as refused:
        return refused.reason
    return None


async def test_connection(endpoint: Endpoint, connect_timeout: float) -> None:
    """Connect and run a trivial request, raising the same SyncErrors a sync would."""
    await _kind(endpoint).check(endpoint, connect_timeout)

"""Kafka topics as data: the connection settings, opening aiokafka clients within the connect timeout,
and the boundary where aiokafka's errors become our SyncError taxonomy.

Connectors are the one place in `service/` allowed to talk to source and target systems, and a Kafka
topic that holds a batch's records is such a system: data, not our event bus (which the service
reaches only through the ports in `producers/` and `consumers/`). So this package imports aiokafka.

Clients follow `producers/clients.py`: idempotence off (the test broker refuses InitProducerId; Kafka
transactions are never relied on), `acks=all`, earliest offsets and our own checkpoints. A topic is
never auto-created by looking at it: existence is read from full-cluster metadata, which asks for no
topic by name.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from service.connectors.errors import failed, transient
from service.sync.errors import ConfigInvalid, ConnectRefused, ConnectTimeout, Side, SyncError, TableMissing
from service.sync.model import Endpoint

MAX_RECORD_BYTES = 1_000_000
"""Kafka's default message limit, enforced by us because the test broker enforces none."""
REQUEST_TIMEOUT_MS = 30_000
METADATA_MAX_AGE_MS = 3_000

T = TypeVar("T")


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str
    topic: str | None
    group_id: str | None
    key: list[str]
    client_id: str


def settings_of(endpoint: Endpoint) -> KafkaSettings:
    """`params.bootstrap` (`host:port[,host:port…]`), `params.topic`, `params.groupId`, `params.key`."""
    params = endpoint.params or {}
    bootstrap = str(params.get("bootstrap") or endpoint.url or "").removeprefix("kafka://").strip()
    if not bootstrap:
        raise ConfigInvalid("Kafka 连接缺少 params.bootstrap")
    key = params.get("key") or []
    keys = [key] if isinstance(key, str) else list(key)
    if not all(isinstance(k, str) and k for k in keys):
        raise ConfigInvalid("params.key 须为列名或列名数组")
    return KafkaSettings(bootstrap=bootstrap, topic=params.get("topic") or None, group_id=params.get("groupId"),
                         key=keys, client_id=str(params.get("clientId") or "batchsync-connector"))


def topic_of(settings: KafkaSettings, table: str) -> str:
    """`params.topic` wins: a connection may pin one topic (whose name need not be an identifier); the
    batch's table names the topic otherwise and is only a label when the connection pins one."""
    return settings.topic or table


def _servers(bootstrap: str) -> list[tuple[str, int]]:
    servers = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        try:
            servers.append((host.strip("[]") or "localhost", int(port)))
        except ValueError as exc:
            raise ConfigInvalid("params.bootstrap 须为 host:port 列表") from exc
    return servers


async def probe(bootstrap: str, side: Side, connect_timeout: float) -> None:
    """A TCP connect to the bootstrap servers, so an unreachable cluster is told apart as refused or
    timed out (aiokafka reports both as "unable to bootstrap") within the connect timeout."""
    refused = 0
    servers = _servers(bootstrap)
    for host, port in servers:
        try:
            async with asyncio.timeout(connect_timeout):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            continue
        except OSError:
            refused += 1
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    if refused == len(servers):
        raise ConnectRefused(side)
    raise ConnectTimeout(side)


async def started(client: Any, side: Side, connect_timeout: float) -> Any:
    """Start an aiokafka client within the connect timeout (a host that accepts and never answers is
    连接超时, not a hang); a client that fails to start is closed again."""
    try:
        async with asyncio.timeout(connect_timeout):
            await client.start()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())
        if isinstance(exc, TimeoutError | KafkaTimeoutError):
            raise ConnectTimeout(side) from exc
        if isinstance(exc, KafkaConnectionError):
            raise ConnectRefused(side, detail=type(exc).__name__) from exc
        if isinstance(exc, KafkaError):
            raise map_error(exc, side) from exc
        raise
    return client


def map_error(exc: BaseException, side: Side) -> SyncError:
    """aiokafka errors as ours: lost connections and retriable broker errors are transient."""
    if isinstance(exc, SyncError):
        return exc
    retriable = isinstance(exc, KafkaError) and getattr(exc, "retriable", False)
    if retriable or isinstance(exc, KafkaConnectionError | KafkaTimeoutError | TimeoutError | ConnectionError):
        return transient(side, type(exc).__name__)
    return failed(side, detail=type(exc).__name__)


async def bounded(operation: Awaitable[T], side: Side, seconds: float) -> T:
    """An aiokafka call that may retry forever on a confused broker, bounded and mapped."""
    try:
        async with asyncio.timeout(seconds):
            return await operation
    except SyncError:
        raise
    except (KafkaError, TimeoutError, OSError) as exc:
        raise map_error(exc, side) from exc


def admin_for(settings: KafkaSettings, connect_timeout: float) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id=settings.client_id,
                               request_timeout_ms=max(int(connect_timeout * 1000), 1000))


async def open_admin(settings: KafkaSettings, side: Side, connect_timeout: float) -> AIOKafkaAdminClient:
    await probe(settings.bootstrap, side, connect_timeout)
    return await started(admin_for(settings, connect_timeout), side, connect_timeout)


async def partitions_of(settings: KafkaSettings, topic: str, side: Side, connect_timeout: float) -> list[int]:
    """The topic's partitions from full-cluster metadata (asking for no topic by name, so nothing is
    auto-created); TableMissing when the topic does not exist."""
    admin = await open_admin(settings, side, connect_timeout)
    try:
        topics = await bounded(admin.describe_topics(), side, connect_timeout)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    for described in topics:
        if described["topic"] == topic and described["error_code"] == 0:
            return sorted(p["partition"] for p in described["partitions"])
    raise TableMissing(topic, side)


async def wait_for(condition: Callable[[], bool], poll: Callable[[], Awaitable[Any]], seconds: float) -> bool:
    """Poll until `condition()` holds or `seconds` pass; the bounded wait for a broker's first answers."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await poll()
    return True


async def check_connection(endpoint: Endpoint, connect_timeout: float) -> None:
    """Cluster metadata within the connect timeout, and the pinned topic's existence (when pinned)."""
    settings = settings_of(endpoint)
    if settings.topic is not None:
        await partitions_of(settings, settings.topic, "source", connect_timeout)
        return
    admin = await open_admin(settings, "source", connect_timeout)
    try:
        await bounded(admin.list_topics(), "source", connect_timeout)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()

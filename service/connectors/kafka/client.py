"""Kafka topics as data: the connection settings, opening aiokafka clients within the connect timeout,
and the boundary where aiokafka's errors become our SyncError taxonomy.

Connectors are the one place in `service/` allowed to talk to source and target systems, and a Kafka
topic that holds a batch's records is such a system: data, not our event bus (which the service
reaches only through the ports in `producers/` and `consumers/`). So this package imports aiokafka.

Clients follow `producers/clients.py`: idempotence off (the test broker refuses InitProducerId; Kafka
transactions are never relied on), `acks=all`, earliest offsets and our own checkpoints. A topic is
never auto-created by looking at it: existence is read from full-cluster metadata, which asks for no
topic by name.

Every client a run or a connection test opens is built by `client_config` from one `Access` that
`cleared` computed first (see `kafka/access.py`): the bootstrap servers and every advertised broker
checked by the access policy for the topics and the group the run names, so no connection reaches a
denied address or the service's own topics on the service's own bus.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from schemas.messages import KAFKA_BOOTSTRAP_MISSING, KAFKA_BOOTSTRAP_SHAPE, KAFKA_KEY_SHAPE
from service.connectors.errors import failed, transient
from service.connectors.kafka.access import Access, Server, clear, confine, pinned, security_config
from service.security.network import NetworkPolicy
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
    security: dict[str, Any]
    """aiokafka's security arguments (protocol, SASL, SSL context); never logged."""
    network: NetworkPolicy

    def __repr__(self) -> str:
        return f"KafkaSettings(bootstrap={self.bootstrap!r}, topic={self.topic!r})"


def settings_of(endpoint: Endpoint) -> KafkaSettings:
    """`params.bootstrap` (`host:port[,host:port…]`), `params.topic`, `params.groupId`, `params.key`, and
    the security keys (`kafka_access.security_config`)."""
    params = endpoint.params or {}
    bootstrap = str(params.get("bootstrap") or endpoint.url or "").removeprefix("kafka://").strip()
    if not bootstrap:
        raise ConfigInvalid(KAFKA_BOOTSTRAP_MISSING)
    key = params.get("key") or []
    keys = [key] if isinstance(key, str) else list(key)
    if not all(isinstance(k, str) and k for k in keys):
        raise ConfigInvalid(KAFKA_KEY_SHAPE)
    _servers(bootstrap)
    return KafkaSettings(bootstrap=bootstrap, topic=params.get("topic") or None, group_id=params.get("groupId"),
                         key=keys, client_id=str(params.get("clientId") or "batchsync-connector"),
                         security=security_config(params, endpoint.policy.files), network=endpoint.policy.network)


def topic_of(settings: KafkaSettings, table: str) -> str:
    """`params.topic` wins: a connection may pin one topic (whose name need not be an identifier); the
    batch's table names the topic otherwise and is only a label when the connection pins one."""
    return settings.topic or table


def _servers(bootstrap: str) -> list[Server]:
    """`host:port` pairs; a host with spaces or control characters, or a port out of range, is refused
    here rather than by the resolver or the socket with errors of their own."""
    servers = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        host = host.strip("[]") or "localhost"
        if not port.isdigit() or not 0 < int(port) < 65536 or not host.isprintable() or " " in host:
            raise ConfigInvalid(KAFKA_BOOTSTRAP_SHAPE)
        servers.append((host, int(port)))
    return servers


async def cleared(settings: KafkaSettings, names: list[str], side: Side, connect_timeout: float) -> Access:
    """The policy's clearance for a run (or a test) that uses the topics and group in `names`, before
    any client connects: AccessDenied, or the refused/timed-out reasons of an unreachable cluster."""
    seeds = await pinned(_servers(settings.bootstrap), names, settings.security, settings.network)
    await probe(seeds, side, connect_timeout)
    try:
        return await clear(seeds, names, settings.security, settings.network, connect_timeout)
    except SyncError:
        raise
    except TimeoutError as exc:
        raise ConnectTimeout(side) from exc
    except KafkaConnectionError as exc:
        raise ConnectRefused(side, detail=type(exc).__name__) from exc
    except (KafkaError, OSError) as exc:
        raise map_error(exc, side) from exc


def client_config(settings: KafkaSettings, access: Access) -> dict[str, Any]:
    """What every aiokafka client of the connection is built with: the cleared bootstrap and security."""
    return {"bootstrap_servers": access.bootstrap, "client_id": settings.client_id, **settings.security}


async def probe(servers: list[Server], side: Side, connect_timeout: float) -> None:
    """A TCP connect to the (checked) bootstrap servers, so an unreachable cluster is told apart as
    refused or timed out (aiokafka reports both as "unable to bootstrap") within the connect timeout."""
    refused = 0
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


async def started(client: Any, access: Access, side: Side, connect_timeout: float) -> Any:
    """Start an aiokafka client, confined to the cleared brokers, within the connect timeout (a host
    that accepts and never answers is 连接超时, not a hang); a client that fails to start is closed again."""
    inner = client.client if isinstance(client, AIOKafkaProducer) else client._client
    confine(inner.cluster, access)
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


async def open_admin(settings: KafkaSettings, access: Access, side: Side,
                     connect_timeout: float) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**client_config(settings, access),
                                request_timeout_ms=max(int(connect_timeout * 1000), 1000))
    return await started(admin, access, side, connect_timeout)


async def partitions_of(settings: KafkaSettings, access: Access, topic: str, side: Side,
                        connect_timeout: float) -> list[int]:
    """The topic's partitions from full-cluster metadata (asking for no topic by name, so nothing is
    auto-created); TableMissing when the topic does not exist."""
    admin = await open_admin(settings, access, side, connect_timeout)
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
    """Cluster metadata within the connect timeout, and the pinned topic's existence (when pinned); a
    pinned topic or group the policy refuses is refused here as it would be by a run."""
    settings = settings_of(endpoint)
    names = [name for name in (settings.topic, settings.group_id) if name]
    access = await cleared(settings, names, "source", connect_timeout)
    if settings.topic is not None:
        await partitions_of(settings, access, settings.topic, "source", connect_timeout)
        return
    admin = await open_admin(settings, access, "source", connect_timeout)
    try:
        await bounded(admin.list_topics(), "source", connect_timeout)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """`consumer.stop()`, seen through to the end even when aiokafka's own close is cut short.

    aiokafka 0.14's fetcher can swallow the cancel it is stopped with (its routine awaits its pending fetches
    under `suppress(CancelledError)`), and its close re-raises a pending fetch's cancel before the client is
    closed: the consumer's fetch routine, metadata synchronizer and connections then ran on for ever,
    retrying a broker that may be gone (one per consumer restart; seen in the suite as "Unable connect to
    node" lines in later tests). So the fetch routine and the client are closed here after `stop()` however
    it ended; a cancel of our caller is still raised, after that. The bus's consumers stop through it too
    (`producers/clients.py`)."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    finally:
        fetcher = getattr(consumer, "_fetcher", None)
        routine = getattr(fetcher, "_fetch_task", None)
        if routine is not None and not routine.done():
            routine.cancel()
        client = getattr(consumer, "_client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

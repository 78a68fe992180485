"""What a kafka connection may reach, and how its aiokafka clients are held to it (docs/spec.md §7, "Network" and
"Kafka security").

A Kafka client connects to the bootstrap servers and then to whatever brokers their metadata advertises,
so checking `params.bootstrap` alone would let a broker that lies in its metadata send our client to the
service's own bus (or a denied address). Before any client of a run connects, `pinned` checks the
bootstrap servers and `clear` fetches the cluster's metadata from the checked addresses and checks every
advertised broker too, each for every name the run will use (topics and the consumer group). `confine`
then holds each client to that list: a broker that appears later, unchecked, is never connected to.

Without TLS the clients connect to the checked IP addresses themselves, so no second DNS lookup can
rebind a name. With TLS (`SSL`, `SASL_SSL`) they keep the names, which the certificate check needs: a
name rebound to another server fails that server's certificate verification instead.
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import BrokerMetadata

from schemas.messages import (
    KAFKA_CAFILE_UNREADABLE,
    KAFKA_CAFILE_WITHOUT_PROTOCOL,
    KAFKA_SASL_CREDENTIALS,
    KAFKA_SASL_WITHOUT_PROTOCOL,
    kafka_mechanism,
    kafka_protocol,
)
from service.security.files import FilePolicy
from service.security.network import NetworkPolicy
from service.sync.errors import ConfigInvalid

log = logging.getLogger(__name__)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

Server = tuple[str, int]


def security_config(params: dict[str, Any], files: FilePolicy) -> dict[str, Any]:
    """The aiokafka client arguments for the connection's `securityProtocol`, `saslMechanism`,
    `saslUsername`, `saslPassword` and `sslCafile` (the same keys as the bus's settings). The CA file
    is a path like any other: the file policy must allow it. Keys that the chosen protocol would
    ignore are refused, so a connection never looks authenticated when it is not."""
    protocol = str(params.get("securityProtocol") or "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise ConfigInvalid(kafka_protocol(PROTOCOLS))
    config: dict[str, Any] = {"security_protocol": protocol}
    sasl = {key: params.get(key) for key in ("saslMechanism", "saslUsername", "saslPassword")}
    if protocol.startswith("SASL_"):
        mechanism = str(sasl["saslMechanism"] or "PLAIN").upper()
        if mechanism not in MECHANISMS:
            raise ConfigInvalid(kafka_mechanism(MECHANISMS))
        if not sasl["saslUsername"] or sasl["saslPassword"] is None:
            raise ConfigInvalid(KAFKA_SASL_CREDENTIALS)
        config |= {"sasl_mechanism": mechanism, "sasl_plain_username": str(sasl["saslUsername"]),
                   "sasl_plain_password": str(sasl["saslPassword"])}
    elif any(value is not None for value in sasl.values()):
        raise ConfigInvalid(KAFKA_SASL_WITHOUT_PROTOCOL)
    cafile = params.get("sslCafile")
    if protocol.endswith("SSL"):
        resolved = files.resolve(str(cafile)) if cafile else None
        try:
            config["ssl_context"] = create_ssl_context(cafile=resolved)
        except (OSError, ValueError) as exc:
            raise ConfigInvalid(KAFKA_CAFILE_UNREADABLE) from exc
    elif cafile:
        raise ConfigInvalid(KAFKA_CAFILE_WITHOUT_PROTOCOL)
    return config


def uses_tls(security: dict[str, Any]) -> bool:
    return str(security.get("security_protocol", "")).endswith("SSL")


@dataclass(frozen=True)
class Access:
    """The cleared way into one cluster: what aiokafka is given as bootstrap servers, and for every
    checked broker address (as the metadata names it) the host to connect to."""

    bootstrap: str
    brokers: dict[Server, str]


async def _checked(network: NetworkPolicy, server: Server, names: Iterable[str], tls: bool) -> list[str]:
    """The hosts to connect to for `server` after the policy checked it for every name: its checked IP
    addresses (the name itself under TLS). One DNS lookup; the bus check runs on those very addresses."""
    host, port = server
    addresses = [str(address) for address in await network.addresses(host, port)]
    for name in names:
        await network.check_topic([(address, port) for address in addresses], name)
    return [host] if tls else addresses


def _joined(hosts: Iterable[Server]) -> str:
    return ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in hosts)


async def pinned(bootstrap: list[Server], names: list[str], security: dict[str, Any],
                 network: NetworkPolicy) -> list[Server]:
    """The checked bootstrap servers, as the hosts to connect to; AccessDenied when one is refused."""
    tls = uses_tls(security)
    hosts: list[Server] = []
    for server in bootstrap:
        hosts.extend((host, server[1]) for host in await _checked(network, server, names, tls))
    return hosts


async def clear(seeds: list[Server], names: list[str], security: dict[str, Any], network: NetworkPolicy,
                connect_timeout: float) -> Access:
    """From `pinned` bootstrap servers, check every broker the cluster's metadata advertises for `names`;
    AccessDenied when one is refused. Network failures are left to the caller to map."""
    seed = _joined(seeds)
    brokers: dict[Server, str] = {server: server[0] for server in seeds}
    for broker in await _advertised(seed, security, connect_timeout):
        if broker not in brokers:
            brokers[broker] = (await _checked(network, broker, names, uses_tls(security)))[0]
    return Access(bootstrap=seed, brokers=brokers)


async def _advertised(seed: str, security: dict[str, Any], connect_timeout: float) -> set[Server]:
    """The brokers the cluster's metadata names (host, port), read from the checked bootstrap hosts by a
    client that connects to nothing else."""
    client = AIOKafkaClient(bootstrap_servers=seed, client_id="batchsync-connector",
                            request_timeout_ms=max(int(connect_timeout * 1000), 1000), **security)
    try:
        async with asyncio.timeout(connect_timeout):
            await client.bootstrap()
        return {(broker.host.strip("[]"), int(broker.port)) for broker in client.cluster.brokers()}
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def confine(cluster: ClusterMetadata, access: Access) -> None:
    """Hold a client to the cleared brokers: every connection aiokafka opens past the bootstrap asks the
    cluster metadata for the broker's address, and gets the checked one or, for a broker the metadata
    names only later and nobody checked, none at all (aiokafka then treats it as unreachable)."""
    lookup = cluster.broker_metadata

    def broker_metadata(node_id: Any) -> BrokerMetadata | None:
        broker = lookup(node_id)
        if broker is None:
            return None
        host = access.brokers.get((broker.host.strip("[]"), int(broker.port)))
        if host is None:
            log.warning("kafka broker %s:%s was not cleared by the access policy; not connecting", broker.host,
                        broker.port)
            return None
        return broker._replace(host=host)

    cluster.broker_metadata = broker_metadata

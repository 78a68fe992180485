"""Which network addresses a connection may reach: docs/spec.md §7 "Network".

Every check runs on the addresses a host name resolves to, at connect time, so a name that later
points somewhere else (DNS rebinding) is caught; connectors then connect to the address that was
checked, not to the name again. Three rules:

- `BATCHSYNC_EGRESS_DENY` (host names or CIDRs) is refused for every connection kind and `/test`;
- the service's own state database (same server and database) is refused as a connection;
- the service's own Kafka bootstrap servers are refused for topics under `P.`.

Addresses of this machine (loopback, any local interface, the unspecified address) count as one
host, so `localhost`, `127.0.0.1`, `::1` and the machine's own IP all name the same server.
"""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import unquote, urlsplit

from schemas.messages import EGRESS_REFUSED, OWN_TOPICS_REFUSED, STATE_DATABASE_REFUSED
from service.sync.errors import AccessDenied, ConnectRefused, ConnectTimeout, Side

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

RESOLVE_TIMEOUT_SECONDS = 10.0


class EgressRefused(AccessDenied):
    reason = EGRESS_REFUSED


def _ip(text: str) -> IPAddress:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@cache
def _local_addresses() -> frozenset[IPAddress]:
    import psutil

    found: set[IPAddress] = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(_ip(address.address))
                except ValueError:
                    continue
    return frozenset(found)


def is_local(address: IPAddress) -> bool:
    """Loopback, unspecified (0.0.0.0, ::) or an address of one of this machine's interfaces."""
    return address.is_loopback or address.is_unspecified or address in _local_addresses()


def same_host(left: frozenset[IPAddress], right: frozenset[IPAddress]) -> bool:
    if left & right:
        return True
    return any(is_local(a) for a in left) and any(is_local(b) for b in right)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself), in the resolver's order."""
    try:
        return [_ip(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = _ip(str(sockaddr[0]))
        if address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True)
class NetworkPolicy:
    deny_networks: tuple[IPNetwork, ...] = (ipaddress.ip_network("169.254.0.0/16"),)
    deny_hosts: frozenset[str] = frozenset()
    state_database: tuple[str, int, str] | None = None
    """(host, port, database) of the service's own state store."""
    bus: tuple[tuple[str, int], ...] = ()
    """The service's own bootstrap servers."""
    topic_prefix: str = ""
    """`P`: topics named `P` or under `P.` on the bus are the service's own."""
    _state_addresses: dict[str, frozenset[IPAddress]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, deny: tuple[str, ...], database_url: str | None, bootstrap: str | None,
           topic_prefix: str) -> "NetworkPolicy":
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for item in deny:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(deny_networks=tuple(networks), deny_hosts=frozenset(hosts),
                   state_database=_database_of(database_url), bus=_servers_of(bootstrap),
                   topic_prefix=topic_prefix)

    async def addresses(self, host: str, port: int, side: Side = "source") -> list[IPAddress]:
        """The addresses of `host` a connection may use, or EgressRefused. Connect to these, not the name.

        A name that does not resolve (or not within `RESOLVE_TIMEOUT_SECONDS`) is a connection failure of
        `side`, not a refusal: a passing DNS fault must stay retryable and read as what it is.
        """
        name = host.strip("[]").lower().rstrip(".")
        if not name:
            raise EgressRefused(detail="empty host")
        if name in self.deny_hosts:
            raise EgressRefused()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                found = await resolve(name, port)
        except TimeoutError as error:
            raise ConnectTimeout(side, detail=f"resolving {host}") from error
        except (OSError, UnicodeError) as error:
            raise ConnectRefused(side, detail=f"cannot resolve {host}") from error
        if not found:
            raise ConnectRefused(side, detail=f"cannot resolve {host}")
        for address in found:
            if any(address in network for network in self.deny_networks if network.version == address.version):
                raise EgressRefused()
        return found

    async def database_addresses(self, host: str, port: int, database: str,
                                 side: Side = "source") -> list[IPAddress]:
        """`addresses`, also refusing the service's own state database."""
        found = await self.addresses(host, port, side)
        if self.state_database is not None:
            state_host, state_port, state_name = self.state_database
            if port == state_port and database == state_name:
                state = await self._resolved_state(state_host, state_port)
                if same_host(frozenset(found), state):
                    raise AccessDenied(STATE_DATABASE_REFUSED)
        return found

    async def check_topic(self, bootstrap: list[tuple[str, int]], topic: str) -> None:
        """Refuse the service's own topics on the service's own bootstrap servers, and denied addresses."""
        resolved: list[tuple[frozenset[IPAddress], int]] = []
        for host, port in bootstrap:
            resolved.append((frozenset(await self.addresses(host, port)), port))
        if not self._own_topic(topic) or not self.bus:
            return
        for host, port in self.bus:
            own = await self._resolved_state(host, port)
            if any(port == their_port and same_host(addresses, own) for addresses, their_port in resolved):
                raise AccessDenied(OWN_TOPICS_REFUSED)

    def _own_topic(self, topic: str) -> bool:
        prefix = self.topic_prefix
        return bool(prefix) and (topic == prefix or topic.startswith(prefix + "."))

    async def _resolved_state(self, host: str, port: int) -> frozenset[IPAddress]:
        key = f"{host}:{port}"
        if key not in self._state_addresses:
            try:
                self._state_addresses[key] = frozenset(await resolve(host, port))
            except OSError:
                return frozenset()
        return self._state_addresses[key]


def _database_of(url: str | None) -> tuple[str, int, str] | None:
    if not url:
        return None
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        return None
    return (parts.hostname or "localhost", port, unquote(parts.path.lstrip("/")) or (parts.username or ""))


def _servers_of(bootstrap: str | None) -> tuple[tuple[str, int], ...]:
    servers: list[tuple[str, int]] = []
    for item in (bootstrap or "").split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            servers.append((host.strip("[]"), int(port)))
    return tuple(servers)

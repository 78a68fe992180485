"""The one way the HTTP connector reaches the network (docs/spec.md §7, "Network"): every new connection, for the
first request, a redirect hop or a next-page link alike, asks the access policy for the addresses of its
host and connects to one of those checked addresses, never to the name again (no second DNS lookup that
a rebinding name could answer differently).

It sits below httpx as an httpcore network backend rather than around `client.get`: httpcore hands it
the host and port of each connection it opens, so no hop can skip the check, and it does TLS afterwards
on the stream returned here with the URL's host name as SNI and for certificate verification, so pinning
the IP leaves TLS exactly as strict as before; the Host header is still the URL's. Proxies and `.netrc`
from the environment are off: a proxy would resolve the name itself, out of the policy's sight.
"""

import asyncio
from collections.abc import Iterable

import httpcore
import httpx
from typing_extensions import override

from service.security.network import NetworkPolicy

LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
"""httpx's own defaults, which its transport would have used."""


class PolicyBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the network policy approved for the host asked for."""

    def __init__(self, network: NetworkPolicy) -> None:
        self._network = network
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not 0 < port < 65536:
            raise httpcore.ConnectError("port out of range")
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._network.addresses(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout("timed out resolving the host") from exc
        failure: Exception = httpcore.ConnectError("no address to connect to")
        for address in addresses:
            try:
                return await self._backend.connect_tcp(str(address), port, timeout=timeout,
                                                       local_address=local_address, socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    @override
    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not a network address")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class PolicyTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request and error mapping unchanged) over a pool that connects through
    `PolicyBackend`. httpx takes no network backend as an argument, so the pool it built is replaced;
    tests/security/test_http_egress.py fails should a new httpx stop using it."""

    def __init__(self, network: NetworkPolicy) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=PolicyBackend(network),
            max_connections=LIMITS.max_connections, max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
        )

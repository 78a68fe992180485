"""docs/spec.md §7 "Network" for http connections, on real loopback servers: every connection, redirect hop and
next-page link alike, goes only to an address the policy approved, and to that very address. 127.0.0.2
is loopback too, so a server bound there is a second host that a policy can deny. (The default deny
list, 169.254.0.0/16, is not exercised by a request here: code that failed the check would send a packet
off this machine.)"""

import ipaddress
from dataclasses import dataclass

import pytest

from schemas.api import SourceSpec
from schemas.events import ErrorCode
from service.connectors.http.client import check_connection
from service.security.network import IPAddress, NetworkPolicy
from service.security.policy import AccessPolicy
from service.sync.errors import AccessDenied
from service.sync.model import Endpoint
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.harness import Context, spec_for, sync
from tests.support.api import api_client, api_settings, asyncpg_url, bearer, create_connection
from tests.support.builders import unique
from tests.support.redirects import recording

DENIED = "127.0.0.2"
DENY = ("169.254.0.0/16", f"{DENIED}/32")
EGRESS_REFUSED = "连接失败：目标地址被安全策略禁止"


def policy(*deny: str) -> AccessPolicy:
    return AccessPolicy(network=NetworkPolicy.of(deny or DENY, None, None, "integration.batch.sync"))


def http(url: str, access: AccessPolicy | None = None, **params) -> Endpoint:
    return Endpoint(type="http", url=url, params=params, policy=access or policy())


@pytest.fixture
def reference(target_dsn, tmp_path):
    return PostgresCase(Context(pg_dsn=target_dsn, tmp_dir=tmp_path, kafka_bootstrap=""))


@pytest.fixture
def denied():
    """A server on the denied address; it must never see a request."""
    with recording(DENIED, body=[{"id": 1}]) as server:
        yield server


async def run_from(source: Endpoint, reference: PostgresCase) -> None:
    table = unique("tgt")
    await sync(spec_for((source, SourceSpec(table="orders")), await reference.create(table), table))


async def test_a_run_redirected_to_a_denied_address_fails_access_denied_and_reaches_nothing(denied, reference):
    with recording(location=f"{denied.url}/api/orders") as redirector:
        with pytest.raises(AccessDenied) as error:
            await run_from(http(f"{redirector.url}/api"), reference)
    assert error.value.code is ErrorCode.ACCESS_DENIED
    assert redirector.seen and denied.seen == []


async def test_a_denied_host_name_is_refused_after_resolution(denied):
    spelt = denied.url.replace(DENIED, "localhost")
    with pytest.raises(AccessDenied):
        await check_connection(http(spelt, policy("127.0.0.0/8")), 1.0)
    with pytest.raises(AccessDenied):
        await check_connection(http(denied.url), 1.0)
    assert denied.seen == []


@dataclass(frozen=True)
class OneName(NetworkPolicy):
    """A policy that approves one made-up name as 127.0.0.1: the name resolves nowhere, so a request
    succeeds only when the transport connects to the address the policy checked, not the name again."""

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        if host == "api.batchsync.invalid":
            return [ipaddress.ip_address("127.0.0.1")]
        return await super().addresses(host, port)


async def test_the_connection_goes_to_the_checked_address_with_the_name_as_host_header():
    with recording(body=[]) as api:
        port = api.url.rsplit(":", 1)[1]
        await check_connection(http(f"http://api.batchsync.invalid:{port}/api",
                                    AccessPolicy(network=OneName())), 1.0)
    assert api.seen[0][1]["host"] == f"api.batchsync.invalid:{port}"


async def test_a_redirect_to_another_host_leaves_the_connections_headers_behind():
    with recording(body=[]) as elsewhere:
        other = elsewhere.url.replace("127.0.0.1", "localhost")
        with recording(location=f"{other}/landing") as api:
            await check_connection(http(f"{api.url}/api", headers={"X-Api-Key": "key-SECRET-1"},
                                        auth={"type": "bearer", "token": "tok-SECRET-2"}), 1.0)
    assert api.seen[0][1]["x-api-key"] == "key-SECRET-1"
    landed = elsewhere.seen[0][1]
    assert "x-api-key" not in landed and "authorization" not in landed


async def test_only_http_and_https_are_followed():
    with recording(location="ftp://127.0.0.1/etc/passwd") as api:
        with pytest.raises(AccessDenied) as error:
            await check_connection(http(f"{api.url}/api"), 1.0)
    assert error.value.reason == "HTTP 连接只允许 http 和 https"


async def test_redirect_hops_are_bounded():
    with recording() as api:
        api.location = f"{api.url}/again"
        with pytest.raises(Exception) as error:
            await check_connection(http(f"{api.url}/api"), 1.0)
    assert "重定向" in str(error.value) and len(api.seen) == 6


async def test_the_connection_test_endpoint_refuses_denied_addresses_and_redirects_to_them(denied, state_dsn):
    settings = api_settings(asyncpg_url(state_dsn), egress_deny=",".join(DENY), connect_timeout_seconds=1)
    with recording(location=f"{denied.url}/") as redirector:
        async with api_client(settings) as client:
            direct = await create_connection(client, type="http", url=f"{denied.url}/api")
            hop = await create_connection(client, type="http", url=f"{redirector.url}/api")
            answers = [await client.post(f"/integration/connection/{c['id']}/test") for c in (direct, hop)]
            reader = await client.post(f"/integration/connection/{hop['id']}/test",
                                       headers=bearer(["integration:connection:query", "integration:connection:add"]))
    assert [a.json() for a in answers] == [{"code": 400, "message": EGRESS_REFUSED, "data": None}] * 2
    assert reader.status_code == 403
    assert len(redirector.seen) == 1 and denied.seen == []

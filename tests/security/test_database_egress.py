"""docs/spec.md §7 "Network" for the database connectors, on the real PostgreSQL and MariaDB.

The finding: a `postgresql` connection to the service's own state database copied every connection's
secrets out. Now the state database is refused however its host is spelt (localhost, 127.0.0.1, ::1,
the machine's own address, no host at all), at `/test` and at run time, as a source and as a target;
a URL cannot reach it around the check (unix socket, several hosts, driver parameters); the egress deny
list holds for both kinds; and the connection goes to the address that was checked, not to the name.
"""

import socket
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
import pytest

from schemas.api import SourceSpec
from schemas.events import ErrorCode
from schemas.messages import (
    EGRESS_REFUSED,
    POSTGRESQL_HOSTS_REFUSED,
    POSTGRESQL_PARAMETERS_REFUSED,
    STATE_DATABASE_REFUSED,
)
from service.security.network import IPAddress, NetworkPolicy, _ip
from service.security.policy import AccessPolicy
from service.sync.errors import Side, SyncError
from service.sync.model import Endpoint
from tests.contract.harness import spec_for, sync
from tests.support.api import api_client, api_settings, asyncpg_url, create_connection

MYSQL_URL = "mysql://root@127.0.0.1:3306/test"


def own_address() -> str | None:
    """An address of this machine that is not loopback (how a remote client would name the server)."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return None


def database_of(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


def spellings(state_dsn: str) -> list[str]:
    """The state database under every name of this machine, and with no host (libpq's local socket)."""
    db = database_of(state_dsn)
    hosts = ["localhost", "127.0.0.1", "[::1]", "127.0.0.2", own_address()]
    return [f"postgresql://postgres@{host}:5432/{db}" for host in hosts if host] + [f"postgresql://postgres@/{db}"]


def state_policy(state_dsn: str) -> AccessPolicy:
    return AccessPolicy(network=NetworkPolicy.of(("169.254.0.0/16",), asyncpg_url(state_dsn), None, ""))


async def failed_sync(source: Endpoint, spec: SourceSpec, target: Endpoint) -> SyncError:
    with pytest.raises(SyncError) as failed:
        await sync(spec_for((source, spec), target, f"t_{uuid.uuid4().hex[:8]}", create=True))
    return failed.value


async def test_a_run_cannot_read_or_write_the_state_database_however_it_is_named(state_dsn, target_dsn):
    policy = state_policy(state_dsn)
    target = Endpoint("postgresql", url=target_dsn, policy=policy)
    for url in spellings(state_dsn):
        error = await failed_sync(Endpoint("postgresql", url=url, policy=policy), SourceSpec(table="connections"),
                                  target)
        assert (error.code, error.reason) == (ErrorCode.ACCESS_DENIED, STATE_DATABASE_REFUSED), url
    as_target = await failed_sync(Endpoint("postgresql", url=target_dsn, policy=policy),
                                  SourceSpec(query="SELECT 1 AS x"),
                                  Endpoint("postgresql", url=state_dsn, policy=policy))
    assert (as_target.code, as_target.reason) == (ErrorCode.ACCESS_DENIED, STATE_DATABASE_REFUSED)


async def test_the_connection_test_refuses_the_state_database_and_passes_another_one(state_dsn, source_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        for url in spellings(state_dsn):
            created = await create_connection(client, url=url)
            answer = await client.post(f"/integration/connection/{created['id']}/test")
            assert answer.status_code == 400, (url, answer.text)
            assert answer.json()["message"] == f"连接失败：{STATE_DATABASE_REFUSED}", url
        other = await create_connection(client, url=source_dsn)
        assert (await client.post(f"/integration/connection/{other['id']}/test")).status_code == 200


@pytest.mark.parametrize(("url", "reason"), [
    ("postgresql://postgres@/{db}?host=/var/run/postgresql", POSTGRESQL_PARAMETERS_REFUSED),
    ("postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/{db}", POSTGRESQL_HOSTS_REFUSED),
    ("postgresql://postgres@127.0.0.1:5432,localhost:5432/{db}", POSTGRESQL_HOSTS_REFUSED),
    ("postgresql://postgres@127.0.0.1:5432/postgres?dbname={db}", POSTGRESQL_PARAMETERS_REFUSED),
    ("postgresql://postgres@127.0.0.1:5432/postgres?hostaddr=127.0.0.1", POSTGRESQL_PARAMETERS_REFUSED),
    ("postgresql://postgres@127.0.0.1:5432/postgres?options=-c%20default_transaction_read_only%3Doff",
     POSTGRESQL_PARAMETERS_REFUSED),
    ("postgresql://postgres@127.0.0.1:5432/postgres?service=batchsync", POSTGRESQL_PARAMETERS_REFUSED),
    ("postgresql://postgres@127.0.0.1:5432/postgres?passfile=/etc/passwd", POSTGRESQL_PARAMETERS_REFUSED),
])
async def test_a_url_cannot_reach_around_the_check(state_dsn, target_dsn, url, reason):
    """A socket, a host list or a driver parameter would let the driver pick a server the policy never saw:
    refused when a run connects, and by `/test` (if the API took the URL at all)."""
    url = url.format(db=database_of(state_dsn))
    policy = state_policy(state_dsn)
    error = await failed_sync(Endpoint("postgresql", url=url, policy=policy), SourceSpec(query="SELECT 1 AS x"),
                              Endpoint("postgresql", url=target_dsn))
    assert error.code == ErrorCode.ACCESS_DENIED and error.reason.startswith(reason), error
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        created = await client.post("/integration/connection",
                                    json={"name": f"c_{uuid.uuid4().hex[:8]}", "type": "postgresql", "url": url})
        if created.status_code == 200:
            answer = await client.post(f"/integration/connection/{created.json()['data']['id']}/test")
            assert answer.status_code == 400, answer.text
            assert answer.json()["message"].startswith(f"连接失败：{reason}")
        else:
            assert created.status_code == 400, created.text


async def test_a_mysql_unix_socket_is_refused(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        created = await create_connection(client, type="mysql",
                                          url=f"{MYSQL_URL}?unix_socket=/run/mysqld/mysqld.sock")
        answer = await client.post(f"/integration/connection/{created['id']}/test")
    assert answer.status_code == 400, answer.text


DENY_LOOPBACK = "127.0.0.0/8,::1/128"


async def test_the_egress_deny_list_holds_for_postgresql_and_mysql(state_dsn, source_dsn, target_dsn):
    deny = AccessPolicy(network=NetworkPolicy.of(tuple(DENY_LOOPBACK.split(",")), None, None, ""))
    target = Endpoint("postgresql", url=target_dsn)
    for source in (Endpoint("postgresql", url=source_dsn, policy=deny),
                   Endpoint("postgresql", url=source_dsn.replace("127.0.0.1", "localhost"), policy=deny),
                   Endpoint("mysql", url=MYSQL_URL, policy=deny)):
        error = await failed_sync(source, SourceSpec(query="SELECT 1 AS x"), target)
        assert (error.code, error.reason) == (ErrorCode.ACCESS_DENIED, EGRESS_REFUSED)
    async with api_client(api_settings(asyncpg_url(state_dsn), egress_deny=DENY_LOOPBACK)) as client:
        for kind, url in (("postgresql", source_dsn), ("mysql", MYSQL_URL)):
            created = await create_connection(client, type=kind, url=url)
            answer = await client.post(f"/integration/connection/{created['id']}/test")
            assert (answer.status_code, answer.json()["message"]) == (400, f"连接失败：{EGRESS_REFUSED}"), kind


@dataclass(frozen=True)
class Resolved(NetworkPolicy):
    """A policy whose resolver answers 127.0.0.1 for every name: what a name resolved to at check time."""

    async def addresses(self, host: str, port: int, side: Side = "source") -> list[IPAddress]:
        return [_ip("127.0.0.1")]


async def test_the_connection_goes_to_the_checked_address_not_to_the_name_again(source_dsn, target_dsn):
    """`rebinding.invalid` resolves to nothing: only a driver handed the checked address reaches the server."""
    pinned = AccessPolicy(network=Resolved())
    target = Endpoint("postgresql", url=target_dsn)
    for url in (source_dsn, MYSQL_URL):
        url = url.replace("127.0.0.1", "rebinding.invalid")
        endpoint = Endpoint(url.split(":", 1)[0], url=url, policy=pinned)
        result = await sync(spec_for((endpoint, SourceSpec(query="SELECT 1 AS x")), target,
                                     f"t_{uuid.uuid4().hex[:8]}", create=True))
        assert result.records_written == 1, url

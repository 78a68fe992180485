"""docs/spec.md §7 "Network" for kafka connections, on the real broker: the session's Tansu plays the service's
own bus, and a kafka connection may use it for other topics but never read or write `P` or `P.*`, however
its bootstrap server is spelt, through the connection test, a source or a target, and also not through a
broker whose metadata advertises the bus. Then the connection's security keys (docs/spec.md §7 "Kafka security")
as they reach the aiokafka clients; the test broker has no SASL, so that part is a unit test."""

import contextlib
import datetime
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from aiokafka import AIOKafkaProducer

from schemas.api import SourceSpec
from schemas.events import ErrorCode
from service.connectors.kafka.access import Access, security_config
from service.connectors.kafka.client import check_connection, client_config, settings_of
from service.security.files import FilePolicy, PathRefused
from service.security.network import NetworkPolicy
from service.security.policy import AccessPolicy
from service.sync.errors import AccessDenied, ConfigInvalid
from service.sync.model import Endpoint
from tests.contract.cases.kafka import create_topic, produce, read_topic
from tests.contract.harness import make_rows, spec_for, sync
from tests.support.api import api_client, api_settings, asyncpg_url, create_connection
from tests.support.brokers import RunningBroker, _die_with_parent, free_port, tansu_binary, wait_ready
from tests.support.builders import unique
from tests.support.http_api import json_record

OWN_TOPICS_REFUSED = "不允许读写服务自身的主题"


@pytest.fixture(scope="module")
def prefix() -> str:
    return unique("bsown")


@pytest.fixture
async def bus(broker: RunningBroker, prefix: str) -> RunningBroker:
    """The session broker holding the service's own topics, each with one record (so an old connector
    would have found something to read)."""
    for topic in (f"{prefix}.requested", f"{prefix}.events"):
        with contextlib.suppress(Exception):
            await create_topic(broker.bootstrap, topic, 1)
    return broker


def policy(bus: RunningBroker, prefix: str) -> AccessPolicy:
    return AccessPolicy(network=NetworkPolicy.of(("169.254.0.0/16",), None, bus.bootstrap, prefix))


def port_of(bus: RunningBroker) -> int:
    return int(bus.bootstrap.rsplit(":", 1)[1])


def spellings(bus: RunningBroker) -> list[str]:
    return [bus.bootstrap, f"localhost:{port_of(bus)}"]


def kafka(bootstrap: str, access: AccessPolicy, **params) -> Endpoint:
    return Endpoint(type="kafka", params={"bootstrap": bootstrap} | params, policy=access)


async def seeded(bus: RunningBroker, count: int = 20) -> str:
    topic = unique("topic")
    await create_topic(bus.bootstrap, topic, 1)
    rows = [json_record(r) for r in make_rows(count)]
    await produce(bus.bootstrap, topic, [json.dumps(r).encode() for r in rows], [None] * count)
    return topic


@pytest.mark.parametrize("own", ["requested", "events"])
async def test_a_source_cannot_read_the_own_topics_however_the_bus_is_spelt(bus, prefix, own):
    for bootstrap in spellings(bus):
        pinned = kafka(bootstrap, policy(bus, prefix), topic=f"{prefix}.{own}")
        named_by_table = kafka(bootstrap, policy(bus, prefix))
        for source in ((pinned, SourceSpec(table="anything")), (named_by_table, SourceSpec(table=f"{prefix}.{own}"))):
            target_topic = await seeded(bus, 0)
            with pytest.raises(AccessDenied) as error:
                await sync(spec_for(source, kafka(bus.bootstrap, policy(bus, prefix)), target_topic))
            assert error.value.code is ErrorCode.ACCESS_DENIED and error.value.reason == OWN_TOPICS_REFUSED


async def test_a_target_cannot_write_the_own_topics_however_the_bus_is_spelt(bus, prefix):
    topic = await seeded(bus)
    before = await read_topic(bus.bootstrap, f"{prefix}.requested")
    for bootstrap in spellings(bus):
        source = (kafka(bus.bootstrap, policy(bus, prefix)), SourceSpec(table=topic))
        for target, table in ((kafka(bootstrap, policy(bus, prefix)), f"{prefix}.requested"),
                              (kafka(bootstrap, policy(bus, prefix), topic=f"{prefix}.requested"), "label"),
                              (kafka(bootstrap, policy(bus, prefix), topic=prefix), "label")):
            with pytest.raises(AccessDenied) as error:
                await sync(spec_for(source, target, table))
            assert error.value.code is ErrorCode.ACCESS_DENIED
    assert await read_topic(bus.bootstrap, f"{prefix}.requested") == before


async def test_a_consumer_group_under_the_prefix_is_refused_on_the_bus(bus, prefix):
    topic = await seeded(bus)
    target_topic = await seeded(bus, 0)
    source = kafka(f"localhost:{port_of(bus)}", policy(bus, prefix), groupId=f"{prefix}.worker")
    with pytest.raises(AccessDenied):
        await sync(spec_for((source, SourceSpec(table=topic)), kafka(bus.bootstrap, policy(bus, prefix)),
                            target_topic))


def _machine_address() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    return None


async def test_the_machines_own_address_names_the_bus_too(bus, prefix):
    address = _machine_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    target = kafka(f"{address}:{port_of(bus)}", policy(bus, prefix), topic=f"{prefix}.events")
    with pytest.raises(AccessDenied):  # refused by the check itself, before any connection is tried
        await sync(spec_for((kafka(bus.bootstrap, AccessPolicy()), SourceSpec(table=await seeded(bus))), target,
                            "label"))


async def test_a_topic_outside_the_prefix_on_the_bus_still_works(bus, prefix):
    rows = make_rows(20)
    topic = await seeded(bus)
    copy = await seeded(bus, 0)
    source = (kafka(f"localhost:{port_of(bus)}", policy(bus, prefix)), SourceSpec(table=topic))
    result = await sync(spec_for(source, kafka(bus.bootstrap, policy(bus, prefix)), copy))
    assert result.records_written == 20
    written = await read_topic(bus.bootstrap, copy)
    assert sorted(r["id"] for r in written) == sorted(r["id"] for r in rows)
    await check_connection(kafka(f"localhost:{port_of(bus)}", policy(bus, prefix), topic=topic), 2.0)


@pytest.fixture
def lying_broker(broker: RunningBroker) -> Iterator[str]:
    """A second broker on its own port whose metadata advertises the bus as the cluster's broker: the
    shape of a hostile cluster that sends clients on to the service's own bus."""
    port = free_port()
    process = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://{broker.bootstrap}", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
    )
    try:
        wait_ready(f"127.0.0.1:{port}", process)
        yield f"127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=10)


async def test_a_broker_advertising_the_bus_cannot_lead_a_connection_to_the_own_topics(bus, prefix, lying_broker):
    topic = await seeded(bus)
    before = await read_topic(bus.bootstrap, f"{prefix}.requested")
    source = (kafka(bus.bootstrap, AccessPolicy()), SourceSpec(table=topic))
    target = kafka(lying_broker, policy(bus, prefix), topic=f"{prefix}.requested")
    with pytest.raises(AccessDenied):
        await sync(spec_for(source, target, "label"))
    with pytest.raises(AccessDenied):
        await check_connection(target, 2.0)
    assert await read_topic(bus.bootstrap, f"{prefix}.requested") == before


async def test_the_connection_test_endpoint_refuses_the_own_topics(bus, prefix, state_dsn):
    topic = await seeded(bus, 0)
    settings = api_settings(asyncpg_url(state_dsn), kafka_bootstrap=bus.bootstrap, topic_prefix=prefix)
    async with api_client(settings) as client:
        refused = [await create_connection(client, type="kafka", url=None,
                                           params={"bootstrap": bootstrap, "topic": f"{prefix}.{own}"})
                   for bootstrap in spellings(bus) for own in ("requested", "events")]
        allowed = await create_connection(client, type="kafka", url=None,
                                          params={"bootstrap": f"localhost:{port_of(bus)}", "topic": topic})
        answers = [await client.post(f"/integration/connection/{c['id']}/test") for c in [*refused, allowed]]
    assert [a.json()["message"] for a in answers] == [f"连接失败：{OWN_TOPICS_REFUSED}"] * 4 + ["连接成功"]


# --- the connection's security keys, as the clients get them -------------------------------------


def _ca_file(folder: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "batchsync test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    path = folder / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


SASL = {"securityProtocol": "SASL_SSL", "saslMechanism": "SCRAM-SHA-512", "saslUsername": "reader",
        "saslPassword": "sasl-SECRET-3141"}


async def test_sasl_and_the_ca_file_reach_every_client(tmp_path):
    _ca_file(tmp_path)
    access = AccessPolicy(files=FilePolicy.of((tmp_path,), None))
    settings = settings_of(Endpoint(type="kafka", params={"bootstrap": "kafka.example:9093", "sslCafile": "ca.pem"}
                                    | SASL, policy=access))
    producer = AIOKafkaProducer(**client_config(settings, Access("kafka.example:9093", {})))
    client = producer.client
    assert (client._security_protocol, client._sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (client._sasl_plain_username, client._sasl_plain_password) == ("reader", "sasl-SECRET-3141")
    assert [c["subject"] for c in client._ssl_context.get_ca_certs()] == [((("commonName", "batchsync test CA"),),)]
    assert "sasl-SECRET-3141" not in repr(settings)


def test_the_security_keys_are_checked():
    files = FilePolicy.of((Path("/nonexistent-root"),), None)
    assert security_config({}, files) == {"security_protocol": "PLAINTEXT"}
    plain = security_config(SASL | {"securityProtocol": "SASL_PLAINTEXT", "saslMechanism": None}, files)
    assert plain == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                     "sasl_plain_username": "reader", "sasl_plain_password": "sasl-SECRET-3141"}
    with pytest.raises(PathRefused):
        security_config({"securityProtocol": "SSL", "sslCafile": "/etc/passwd"}, files)
    for wrong in ({"securityProtocol": "KERBEROS"}, {"saslUsername": "reader"}, {"sslCafile": "ca.pem"},
                  SASL | {"saslMechanism": "GSSAPI"}, SASL | {"saslPassword": None}):
        with pytest.raises(ConfigInvalid):
            security_config(wrong, files)


async def test_the_ca_file_is_resolved_inside_the_file_roots(tmp_path):
    outside = _ca_file(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "ca.pem").symlink_to(outside)
    endpoint = Endpoint(type="kafka", params={"bootstrap": "h:9093", "securityProtocol": "SSL",
                                              "sslCafile": "ca.pem"},
                        policy=AccessPolicy(files=FilePolicy.of((root,), None)))
    with pytest.raises(PathRefused):
        settings_of(endpoint)


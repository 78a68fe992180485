"""Every Kafka client of the service's own bus carries the bus security settings (docs/spec.md §7, "Kafka security").

Two halves: the factories in producers/clients.py build real aiokafka clients whose configuration holds
the settings, and no other module of the service constructs a bus client itself (connectors build
clients for *connections*, with the connection's own params). The one client of clients.py built
without the settings is `broker_answers`, the readiness probe of the loopback broker `up` starts.
"""

import ast
import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from producers.clients import bus_security, new_admin, new_consumer, new_producer
from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
BUILDS_BUS_CLIENTS = ROOT / "producers" / "clients.py"
CONNECTION_CLIENTS = (ROOT / "service" / "connectors",)


def ca_file(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test bus CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def secured(tmp_path: Path) -> Settings:
    return Settings(kafka_bootstrap="kafka.internal:9093", kafka_security_protocol="sasl_ssl",
                    kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="batchsync",
                    kafka_sasl_password="bus-password", kafka_ssl_cafile=str(ca_file(tmp_path)))


def test_plaintext_adds_nothing_but_the_protocol() -> None:
    assert bus_security(Settings(kafka_bootstrap="b:9092")) == {"bootstrap_servers": "b:9092",
                                                                "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_sets_mechanism_credentials_and_a_verifying_tls_context(tmp_path) -> None:
    config = bus_security(secured(tmp_path))
    assert (config["security_protocol"], config["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("batchsync", "bus-password")
    context = config["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(ca["subject"] == ((("commonName", "test bus CA"),),) for ca in context.get_ca_certs())


async def test_every_factory_builds_a_client_with_the_bus_security(tmp_path) -> None:
    settings = secured(tmp_path)
    producer = new_producer(settings)
    consumer = new_consumer(settings, group_id="g", fetch_max_wait_ms=20, max_partition_fetch_bytes=8 << 20)
    admin = new_admin(settings)
    for client in (producer.client, consumer._client, admin._client):
        assert (client._security_protocol, client._sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
        assert (client._sasl_plain_username, client._sasl_plain_password) == ("batchsync", "bus-password")
        assert isinstance(client._ssl_context, ssl.SSLContext)
        assert client._bootstrap_servers == "kafka.internal:9093"


def test_sasl_without_credentials_is_refused_naming_the_settings() -> None:
    with pytest.raises(ValueError, match="BATCHSYNC_KAFKA_SASL_PASSWORD"):
        bus_security(Settings(kafka_bootstrap="b:9092", kafka_security_protocol="SASL_PLAINTEXT",
                              kafka_sasl_username="batchsync"))


def test_a_consumer_cannot_override_the_bus_security() -> None:
    with pytest.raises(ValueError, match="security_protocol"):
        new_consumer(Settings(kafka_bootstrap="b:9092"), group_id=None, fetch_max_wait_ms=20,
                     security_protocol="PLAINTEXT")


def _constructions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name in CLIENTS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


def test_no_bus_client_is_built_outside_producers_clients() -> None:
    sources = [p for folder in ("producers", "consumers", "service") for p in (ROOT / folder).rglob("*.py")]
    elsewhere = [
        hit for path in sources if path != BUILDS_BUS_CLIENTS
        and not any(path == c or c in path.parents for c in CONNECTION_CLIENTS)
        for hit in _constructions(path)
    ]
    assert elsewhere == []
    assert len(_constructions(BUILDS_BUS_CLIENTS)) == 4  # new_producer, new_consumer, new_admin, the probe

"""The service's own Kafka clients (the bus, docs/spec.md §4), built from Settings in one place.

Every producer, consumer and admin client of the bus is made here, so each carries the bus security
settings (docs/spec.md §7): a test lists the constructors and checks that none is built anywhere else.
Idempotence is off because the test broker refuses InitProducerId; effects are made exactly-once
by our own ids instead. Metadata is refreshed often so a restarted broker is noticed quickly.
"""

import contextlib
import socket
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from service.config import Settings
from service.connectors.kafka.client import stop_consumer as stop_consumer  # the bus's consumers stop through it too

METADATA_MAX_AGE_MS = 3_000
LINGER_MS = 1
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
BUS_SECURITY_KEYS = frozenset({"bootstrap_servers", "security_protocol", "ssl_context", "sasl_mechanism",
                               "sasl_plain_username", "sasl_plain_password"})
"""Every keyword `bus_security` may set; callers cannot override them."""


def client_id(settings: Settings, role: str) -> str:
    return f"batchsync-{role}-{settings.worker_id or socket.gethostname()}"


def bus_security(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments shared by every client of the bus (`BATCHSYNC_KAFKA_*`).

    TLS verifies the broker against `BATCHSYNC_KAFKA_SSL_CAFILE` (or the system CAs when unset); SASL
    sends the configured mechanism, user name and password. PLAINTEXT adds nothing.
    """
    protocol = settings.kafka_security_protocol
    config: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap, "security_protocol": protocol}
    if protocol in TLS_PROTOCOLS:
        config["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    if protocol in SASL_PROTOCOLS:
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        if not settings.kafka_sasl_username or not password:
            raise ValueError(f"BATCHSYNC_KAFKA_SECURITY_PROTOCOL={protocol} needs BATCHSYNC_KAFKA_SASL_USERNAME "
                             "and BATCHSYNC_KAFKA_SASL_PASSWORD")
        config.update({"sasl_mechanism": settings.kafka_sasl_mechanism or "PLAIN",
                       "sasl_plain_username": settings.kafka_sasl_username,
                       "sasl_plain_password": password})
    return config


def producer_config(settings: Settings) -> dict[str, Any]:
    return {
        **bus_security(settings),
        "client_id": client_id(settings, "producer"),
        "acks": "all",
        "enable_idempotence": False,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        "max_request_size": settings.max_message_bytes + 64 * 1024,
        "linger_ms": LINGER_MS,
        "metadata_max_age_ms": METADATA_MAX_AGE_MS,
        "retry_backoff_ms": 100,
    }


def consumer_config(settings: Settings, *, group_id: str | None, fetch_max_wait_ms: int) -> dict[str, Any]:
    return {
        **bus_security(settings),
        "client_id": client_id(settings, "consumer"),
        "group_id": group_id,
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        "request_timeout_ms": max(settings.kafka_request_timeout_ms, settings.session_timeout_ms + 5_000),
        "metadata_max_age_ms": METADATA_MAX_AGE_MS,
        "max_partition_fetch_bytes": max(1024 * 1024, settings.max_message_bytes + 64 * 1024),
        "retry_backoff_ms": 100,
    }


def admin_config(settings: Settings) -> dict[str, Any]:
    return {
        **bus_security(settings),
        "client_id": client_id(settings, "admin"),
        "request_timeout_ms": settings.kafka_request_timeout_ms,
    }


def new_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(**producer_config(settings))


def new_consumer(settings: Settings, *, group_id: str | None, fetch_max_wait_ms: int,
                 **overrides: Any) -> AIOKafkaConsumer:
    """A bus consumer; `overrides` adjust tuning (fetch sizes), never the security settings."""
    if refused := sorted(set(overrides) & BUS_SECURITY_KEYS):
        raise ValueError(f"bus consumers take the security settings from Settings only, not {refused}")
    return AIOKafkaConsumer(**{**consumer_config(settings, group_id=group_id, fetch_max_wait_ms=fetch_max_wait_ms),
                               **overrides})


def new_admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**admin_config(settings))


async def broker_answers(bootstrap: str) -> bool:
    """A real Kafka request (metadata) succeeds, not only a TCP connect: the broker is ready."""
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
    except OSError:
        return False
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)  # a probe: no settings yet
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()

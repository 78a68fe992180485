"""Keyword arguments for aiokafka clients, derived from Settings in one place.

Idempotence is off because the test broker refuses InitProducerId; effects are made exactly-once
by our own ids instead. Metadata is refreshed often so a restarted broker is noticed quickly.
"""

import socket

from service.config import Settings

METADATA_MAX_AGE_MS = 3_000
LINGER_MS = 1


def client_id(settings: Settings, role: str) -> str:
    return f"batchsync-{role}-{settings.worker_id or socket.gethostname()}"


def producer_config(settings: Settings) -> dict:
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": client_id(settings, "producer"),
        "acks": "all",
        "enable_idempotence": False,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        "max_request_size": settings.max_message_bytes + 64 * 1024,
        "linger_ms": LINGER_MS,
        "metadata_max_age_ms": METADATA_MAX_AGE_MS,
        "retry_backoff_ms": 100,
    }


def consumer_config(settings: Settings, *, group_id: str | None, fetch_max_wait_ms: int) -> dict:
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
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


def admin_config(settings: Settings) -> dict:
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": client_id(settings, "admin"),
        "request_timeout_ms": settings.kafka_request_timeout_ms,
    }

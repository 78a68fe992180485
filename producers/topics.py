"""Create the five topics at their final partition counts (the test broker cannot add partitions later).

The events topic is the audit log: created with unlimited retention, and a finite retention on an
existing one is reported loudly because it would silently lose history.
"""

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from producers.clients import new_admin
from service.config import Settings
from service.ports import BrokerUnavailable

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
MAX_REPLICATION = 3


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic name → (partitions, configs)."""
    t = settings.topics
    return {
        t.requested: (settings.requested_partitions, {"retention.ms": str(settings.requests_retention_ms)}),
        t.events: (settings.events_partitions, {"retention.ms": "-1", "retention.bytes": "-1"}),
        t.replies: (settings.replies_partitions, {"retention.ms": str(settings.replies_retention_ms)}),
        t.dlq: (settings.events_partitions, {"retention.ms": str(settings.dlq_retention_ms)}),
        t.rejected: (settings.events_partitions, {"retention.ms": str(settings.dlq_retention_ms)}),
    }


async def ensure_topics(settings: Settings) -> None:
    """Create whichever topics are missing; BrokerUnavailable when the broker is not reached in time."""
    await create_missing_topics(settings)


async def create_missing_topics(settings: Settings) -> list[str]:
    """`ensure_topics` that says which topics it had to create (after a broker restart: all of them)."""
    timeout = 2 * settings.kafka_request_timeout_ms / 1000
    admin = new_admin(settings)
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            created = await _create_missing(admin, settings)
            await _check_events_retention(admin, settings)
            return created
    except (KafkaError, OSError, TimeoutError) as exc:
        raise BrokerUnavailable(f"cannot ensure topics at {settings.kafka_bootstrap}: {exc!r}") from exc
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def _create_missing(admin: AIOKafkaAdminClient, settings: Settings) -> list[str]:
    specs = topic_specs(settings)
    existing = set(await admin.list_topics())
    missing = [name for name in specs if name not in existing]
    if not missing:
        return []
    brokers = (await admin.describe_cluster()).get("brokers") or [None]
    replication = min(MAX_REPLICATION, len(brokers))
    new = [NewTopic(name, specs[name][0], replication, topic_configs=specs[name][1]) for name in missing]
    response = await admin.create_topics(new)
    for err in response.to_object()["topic_errors"]:
        if err["error_code"] not in (0, TOPIC_ALREADY_EXISTS):
            raise KafkaError(f"create topic {err['topic']}: {err['error_code']} {err['error_message']}")
    log.info("created topics %s", missing)
    return missing


async def _check_events_retention(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    topic = settings.topics.events
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    for response in responses:
        for resource in response.to_object()["resources"]:
            configs = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
            for name in ("retention.ms", "retention.bytes"):
                value = configs.get(name)
                if value is not None and value != "-1":
                    log.warning("audit topic %s has %s=%s: old lifecycle events will be deleted and "
                                "audit replay will miss them; set it to -1", topic, name, value)

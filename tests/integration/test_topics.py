"""Topics are created at their final partition counts with the audit log's unlimited retention."""

import logging
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from producers.topics import ensure_topics
from service.config import Settings
from service.ports import BrokerUnavailable
from tests.support.brokers import free_port


def settings_for(broker) -> Settings:
    return Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:8]}",
                    requested_partitions=5, events_partitions=4, replies_partitions=2)


async def describe(bootstrap: str, topics: list[str]) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)}
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    finally:
        await admin.close()
    configs = {
        r["resource_name"]: {e["config_names"]: e["config_value"] for e in r["config_entries"]}
        for response in responses for r in response.to_object()["resources"]
    }
    return partitions, configs


async def test_topics_have_their_partitions_and_retention(broker) -> None:
    settings = settings_for(broker)
    t = settings.topics
    await ensure_topics(settings)
    partitions, configs = await describe(broker.bootstrap, t.all())
    assert partitions == {t.requested: 5, t.events: 4, t.replies: 2, t.dlq: 4, t.rejected: 4}
    assert configs[t.events]["retention.ms"] == "-1"
    assert configs[t.events]["retention.bytes"] == "-1"
    assert configs[t.requested]["retention.ms"] == str(settings.requests_retention_ms)
    assert configs[t.replies]["retention.ms"] == str(settings.replies_retention_ms)
    assert configs[t.dlq]["retention.ms"] == str(settings.dlq_retention_ms)
    assert configs[t.rejected]["retention.ms"] == str(settings.dlq_retention_ms)


async def test_ensure_is_idempotent(broker) -> None:
    settings = settings_for(broker)
    await ensure_topics(settings)
    await ensure_topics(settings)
    partitions, _ = await describe(broker.bootstrap, settings.topics.all())
    assert partitions[settings.topics.events] == 4


async def test_finite_retention_on_existing_events_topic_warns(broker, caplog) -> None:
    settings = settings_for(broker)
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.topics.events, 4, 1, topic_configs={"retention.ms": "60000"})])
    finally:
        await admin.close()
    with caplog.at_level(logging.WARNING, logger="producers.topics"):
        await ensure_topics(settings)
    assert any("retention.ms=60000" in r.getMessage() for r in caplog.records)


async def test_unreachable_broker_raises_broker_unavailable() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_request_timeout_ms=1000)
    with pytest.raises(BrokerUnavailable):
        await ensure_topics(settings)

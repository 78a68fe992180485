"""`audit replay` exit codes when it cannot read, and its warning on a finite-retention audit log."""

import asyncio
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from producers.topics import ensure_topics
from service.cli.audit import audit_app
from service.config import Settings
from tests.support.brokers import free_port

NO_SUCH_BATCH = "2147483000"


async def invoke(env: dict[str, str], *args: str):
    env = {"BATCHSYNC_KAFKA_REQUEST_TIMEOUT_MS": "1000", "BATCHSYNC_CONNECT_TIMEOUT_SECONDS": "2", **env}
    return await asyncio.to_thread(CliRunner().invoke, audit_app, ["replay", *args], env=env)


def env_for(state_dsn: str, bootstrap: str) -> dict[str, str]:
    return {"BATCHSYNC_DATABASE_URL": state_dsn, "BATCHSYNC_KAFKA_BOOTSTRAP": bootstrap,
            "BATCHSYNC_TOPIC_PREFIX": f"au{uuid.uuid4().hex[:8]}"}


async def test_broker_down_exits_2_with_a_clear_message(state_dsn):
    result = await invoke(env_for(state_dsn, f"127.0.0.1:{free_port()}"))
    assert result.exit_code == 2, result.output
    assert "the events log could not be read" in result.stderr


async def test_database_down_exits_2_with_a_clear_message(broker):
    result = await invoke(env_for(f"postgresql://postgres@127.0.0.1:{free_port()}/nope", broker.bootstrap))
    assert result.exit_code == 2, result.output
    assert "the database could not be reached" in result.stderr


async def test_rebuild_cannot_be_limited_to_a_time(state_dsn, broker):
    result = await invoke(env_for(state_dsn, broker.bootstrap), "--rebuild", "--since", "2026-01-01T00:00:00Z")
    assert result.exit_code == 2 and "--since" in result.stderr


async def test_missing_events_topic_is_an_empty_log(state_dsn, broker):
    result = await invoke(env_for(state_dsn, broker.bootstrap), "--batch", NO_SUCH_BATCH)
    assert result.exit_code == 0, result.output
    assert "does not exist" in result.stderr and "events read: 0" in result.stdout


async def test_finite_retention_of_the_events_topic_is_warned(state_dsn, broker):
    env = env_for(state_dsn, broker.bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{env['BATCHSYNC_TOPIC_PREFIX']}.events", 2, 1,
                                            topic_configs={"retention.ms": "86400000"})])
    finally:
        await admin.close()
    result = await invoke(env, "--batch", NO_SUCH_BATCH)
    assert result.exit_code == 0, result.output
    assert "retention.ms=86400000" in result.stderr
    created = env_for(state_dsn, broker.bootstrap)
    await ensure_topics(Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=created["BATCHSYNC_TOPIC_PREFIX"]))
    unlimited = await invoke(created, "--batch", NO_SUCH_BATCH)
    assert unlimited.exit_code == 0 and "warning" not in unlimited.stderr, unlimited.output

"""Issue 7, "the service's own bus": forged BatchSyncStarted/Completed events written straight to the audit
topic showed a 987,654,321-row run in history and statistics, and `audit replay` said `mismatches: 0`.

Now everything the service writes carries `batchsync-signature` (docs/spec.md §7); the projector sends anything
else to the DLQ, audit replay names it `forged` and exits 1, the request-reply client ignores a forged
reply, and the bus security settings reach the real Kafka clients. Real Tansu broker, real PostgreSQL.
"""

import asyncio
import uuid

import pytest
from typer.testing import CliRunner

from consumers.replies import ReplyListener
from producers.publisher import Publisher
from producers.request_reply import RequestReplyClient
from schemas.base import utcnow
from schemas.events import BatchSyncCompleted, BatchSyncRequested, BatchSyncStarted, Trigger
from schemas.wire import encode
from service.cli.audit import audit_app
from service.config import Settings
from service.ports import BrokerUnavailable
from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.databases import migrated_database
from tests.support.signing import produce_record, read_records, signed_by, signed_headers
from tests.support.sql import fetchval
from tests.support.stack import create_batch, create_connection, running_stack, stack_settings

pytestmark = pytest.mark.slow

FORGED_RECORDS = 987_654_321
ATTACKER_KEY = "a-key-the-attacker-made-up-0123456789"


class Scene:
    """The stack, one batch with one genuine run, and what the tests read back."""

    def __init__(self, stack, dsn: str, batch_id: int, run_id: str) -> None:
        self.stack, self.dsn, self.batch_id, self.run_id = stack, dsn, batch_id, run_id
        self.settings: Settings = stack.settings

    async def sync(self) -> str:
        response = await self.stack.client.post(f"/integration/batch/{self.batch_id}/sync",
                                                 headers=self.stack.headers())
        assert response.status_code == 200, response.text
        run_id = response.json()["data"]["runId"]
        await self.projected(run_id)
        return run_id

    async def projected(self, run_id: str) -> None:
        async with asyncio.timeout(30):
            while await fetchval(self.dsn, "SELECT status FROM run_history WHERE run_id = $1::uuid",
                                 run_id) != "SUCCESS":
                await asyncio.sleep(0.1)

    async def views(self) -> tuple[dict, list]:
        """The batch's statistics and history, as the API shows them."""
        base = f"/integration/batch/{self.batch_id}"
        stats = (await self.stack.client.get(f"{base}/statistics", headers=self.stack.headers())).json()["data"]
        history = (await self.stack.client.get(f"{base}/history", headers=self.stack.headers())).json()["data"]
        return stats, history["rows"]

    async def replay(self, *args: str, **env: str | None) -> tuple[int, str]:
        """The real CLI; an environment value of None unsets that variable."""
        env = {"BATCHSYNC_DATABASE_URL": self.settings.database_url or "",
               "BATCHSYNC_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap or "",
               "BATCHSYNC_TOPIC_PREFIX": self.settings.topic_prefix, **env}
        result = await asyncio.to_thread(CliRunner().invoke, audit_app,
                                         ["replay", "--settle-seconds", "0", *args], env=env)
        return result.exit_code, result.stdout + result.stderr


@pytest.fixture(scope="module")
def audit_db():
    """A state database of our own, so the audit sees only this module's runs."""
    with migrated_database("bs_signed") as dsn:
        yield dsn


@pytest.fixture(scope="module")
async def scene(audit_db, broker, source_dsn, target_dsn):
    table = unique("orders")
    await create_orders(source_dsn, table, 50)
    await create_empty_like_orders(target_dsn, table)
    async with running_stack(stack_settings(audit_db, broker.bootstrap)) as stack:
        batch_id = await create_batch(stack, unique("signed"), await create_connection(stack, unique("s"), source_dsn),
                                      await create_connection(stack, unique("t"), target_dsn), {"table": table},
                                      {"table": table, "mode": "upsert", "keyColumns": ["id"]})
        scene = Scene(stack, audit_db, batch_id, "")
        scene.run_id = await scene.sync()
        yield scene


def forged_run(batch_id: int) -> tuple[uuid.UUID, BatchSyncStarted, BatchSyncCompleted]:
    run_id = uuid.uuid4()
    common = {"batch_id": batch_id, "run_id": run_id, "correlation_id": f"c-{run_id}", "producer": "batchsync-worker"}
    started = BatchSyncStarted(**common, trigger=Trigger.HTTP, requested_by="ceo@bank.example", started_at=utcnow())
    completed = BatchSyncCompleted(**common, success=True, message="同步成功", sync_time=utcnow(),
                                   records_synced=FORGED_RECORDS, duration_ms=1000)
    return run_id, started, completed


async def test_a_genuine_runs_events_and_reply_are_signed_and_verify_after_rotation(scene: Scene) -> None:
    topics = scene.settings.topics
    events = [r for r in await read_records(scene.settings.kafka_bootstrap, topics.events, at_least=2)
              if scene.run_id.encode() in r.value]
    types = {dict(r.headers)["eventType"] for r in events}
    assert {b"BatchSyncStarted", b"BatchSyncCompleted"} <= types
    assert all(signed_by(scene.settings, r) for r in events)
    replies = [r for r in await read_records(scene.settings.kafka_bootstrap, topics.replies, at_least=1)
               if scene.run_id.encode() in r.value]
    assert len(replies) == 1 and signed_by(scene.settings, replies[0])
    code, out = await scene.replay()
    assert code == 0 and "forged 0" in out, out

    current = scene.settings.secret_key.get_secret_value()
    rotated = Settings(secret_key="the-next-service-key-0123456789",
                       secret_key_previous=f"older-key-000000000,{current}")
    assert all(signed_by(rotated, r) for r in events)
    code, out = await scene.replay(BATCHSYNC_SECRET_KEY=rotated.secret_key.get_secret_value(),
                                   BATCHSYNC_SECRET_KEY_PREVIOUS=rotated.secret_key_previous.get_secret_value())
    assert code == 0 and "forged 0" in out and "mismatches: 0" in out, out
    code, out = await scene.replay(BATCHSYNC_SECRET_KEY=rotated.secret_key.get_secret_value(),
                                   BATCHSYNC_SECRET_KEY_PREVIOUS="")
    assert code == 1 and f"forged run={scene.run_id}" in out, out


async def test_audit_replay_uses_the_key_up_keeps_and_refuses_to_run_without_one(scene: Scene, tmp_path) -> None:
    (tmp_path / "secret_key").write_text(scene.settings.secret_key.get_secret_value() + "\n")
    code, out = await scene.replay(BATCHSYNC_SECRET_KEY=None, BATCHSYNC_DATA_DIR=str(tmp_path))
    assert code == 0 and "forged 0" in out, out
    code, out = await scene.replay(BATCHSYNC_SECRET_KEY=None, BATCHSYNC_DATA_DIR=str(tmp_path / "none"))
    assert code == 2 and "BATCHSYNC_SECRET_KEY is not set" in out, out


async def test_forged_events_go_to_the_dlq_and_never_into_history_or_statistics(scene: Scene) -> None:
    settings, bootstrap = scene.settings, scene.settings.kafka_bootstrap
    topics, key = settings.topics, str(scene.batch_id).encode()
    stats_before, history_before = await scene.views()
    run_id, started, completed = forged_run(scene.batch_id)
    attacker = Settings(secret_key=ATTACKER_KEY)
    await produce_record(bootstrap, topics.events, encode(started), key)  # valid JSON, no signature
    await produce_record(bootstrap, topics.events, encode(completed), key,  # signed, with a key of its own
                         signed_headers(attacker, topics.events, key, encode(completed)))

    parked = await read_records(bootstrap, topics.dlq, at_least=2)
    from_events = [r for r in parked if dict(r.headers)["dlqSourceTopic"] == topics.events.encode()]
    refused = {r.value: dict(r.headers) for r in from_events}
    assert refused[encode(started)]["dlqReason"].startswith(b"unsigned")
    assert refused[encode(completed)]["dlqReason"].startswith(b"forged")
    assert all(signed_by(settings, r) for r in parked)

    # the DLQ copy carries the service's signature, but for the DLQ: copied back, it still does not verify
    copy = next(r for r in parked if r.value == encode(completed))
    await produce_record(bootstrap, topics.events, copy.value, copy.key, list(copy.headers))
    laundered = (await read_records(bootstrap, topics.dlq, at_least=3))[-1]
    assert dict(laundered.headers)["dlqReason"].startswith(b"forged") and laundered.value == encode(completed)

    second = await scene.sync()  # the projector went on past the forgeries
    stats_after, history_after = await scene.views()
    assert await fetchval(scene.dsn, "SELECT count(*) FROM run_history WHERE run_id = $1", run_id) == 0
    assert [row["runId"] for row in history_after] == [second, *[row["runId"] for row in history_before]]
    assert FORGED_RECORDS not in [row["recordsSynced"] for row in history_after]
    assert stats_after["totalRuns"] == stats_before["totalRuns"] + 1
    assert stats_after["totalRecordsSynced"] == stats_before["totalRecordsSynced"] + 50


async def test_audit_replay_names_forged_events_and_rebuild_never_projects_them(scene: Scene) -> None:
    code, out = await scene.replay()
    assert code == 1, out
    assert "forged 3)" in out, out
    forged_lines = [line for line in out.splitlines() if line.startswith("forged ")]
    assert len(forged_lines) == 3 and all(f"batch={scene.batch_id}" in line for line in forged_lines), out
    assert sum("unsigned" in line for line in forged_lines) == 1
    assert not [line for line in out.splitlines() if line.startswith(("missing", "history-", "runs-"))], out

    code, out = await scene.replay("--rebuild")
    assert code == 1 and "projection rebuilt: 2 runs" in out, out
    assert await fetchval(scene.dsn, "SELECT count(*) FROM run_history") == 2
    assert await fetchval(scene.dsn, "SELECT max(records_synced) FROM run_history") == 50


async def test_request_reply_ignores_a_reply_without_our_signature(broker) -> None:
    settings = stack_settings("postgresql://unused", broker.bootstrap)
    publisher = Publisher(settings)
    await publisher.start()
    client = RequestReplyClient(settings, publisher)
    listener = ReplyListener(settings, client)
    await listener.start()
    request = BatchSyncRequested(batch_id=7, correlation_id=str(uuid.uuid4()), producer="test",
                                 trigger=Trigger.HTTP, requested_by="alice", reply_to=settings.topics.replies)

    def reply(records: int) -> BatchSyncCompleted:
        return BatchSyncCompleted(batch_id=7, correlation_id=request.correlation_id, producer="batchsync-worker",
                                  success=True, message="同步成功", sync_time=utcnow(), records_synced=records)

    async def answer() -> None:
        await read_records(broker.bootstrap, settings.topics.requested, at_least=1)
        key = request.correlation_id.encode()
        await produce_record(broker.bootstrap, settings.topics.replies, encode(reply(FORGED_RECORDS)), key)
        forged = encode(reply(FORGED_RECORDS + 1))
        await produce_record(broker.bootstrap, settings.topics.replies, forged, key,
                             signed_headers(Settings(secret_key=ATTACKER_KEY), settings.topics.replies, key, forged))
        await asyncio.sleep(0.5)
        await publisher.send(settings.topics.replies, encode(reply(5)), key=key)

    try:
        answering = asyncio.create_task(answer())
        outcome = await client.request(request, timeout=20)
        await answering
    finally:
        await listener.stop()
        await publisher.stop()
    assert outcome is not None and outcome.records_synced == 5


async def test_bus_security_settings_reach_the_real_clients(broker) -> None:
    """TLS to the plaintext test broker must fail: proof that the setting is not dropped on the way."""
    plain = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"sec{uuid.uuid4().hex[:8]}",
                     kafka_request_timeout_ms=1500)
    tls = plain.model_copy(update={"kafka_security_protocol": "SSL"})
    for settings, works in ((plain, True), (tls, False)):
        publisher = Publisher(settings)
        try:
            if works:
                await publisher.send(settings.topics.events, b"{}", key=b"1")
            else:
                with pytest.raises(BrokerUnavailable):
                    await publisher.send(settings.topics.events, b"{}", key=b"1")
        finally:
            await publisher.stop()

"""No acknowledged event is lost (issue 14 item 3): noida-db, whose log survives a restart but loses the
last second of acknowledged writes on SIGKILL, is killed right after a burst of syncs and started again on
the same data. The outbox reconciler puts back what the log lacks, the projector (its stored offsets now
possibly past the end) reads again from the earliest offset, and `audit replay` finds every run on the log,
in the history and in `runs`, with 0 mismatches."""

import asyncio
import logging

import pytest
from typer.testing import CliRunner

from service.cli.audit import audit_app
from service.db.migrate import upgrade
from tests.integration.test_bus_recovery import in_history, new_batch
from tests.support.databases import fresh_database
from tests.support.fault_brokers import restartable
from tests.support.sql import fetchval
from tests.support.stack import running_stack, stack_settings

pytestmark = pytest.mark.slow

BURST = 10


async def replay(settings) -> tuple[int, str]:
    env = {"BATCHSYNC_DATABASE_URL": settings.database_url, "BATCHSYNC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "BATCHSYNC_TOPIC_PREFIX": settings.topic_prefix}
    result = await asyncio.to_thread(CliRunner().invoke, audit_app, ["replay", "--settle-seconds", "0"], env=env)
    return result.exit_code, result.stdout + result.stderr


async def events_published(dsn: str, topic: str) -> int:
    return await fetchval(dsn, "SELECT count(*) FROM outbox WHERE topic = $1 AND published_at IS NOT NULL", topic)


@pytest.fixture
def own_state():
    """A state database of our own, so audit replay sees only this test's runs."""
    with fresh_database("bs_noida_loss") as dsn:
        upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        yield dsn


@pytest.mark.parametrize("assignment", ["all", "group"])
async def test_killing_noida_right_after_a_burst_loses_no_event(assignment, own_state, source_dsn, target_dsn,
                                                                caplog):
    caplog.set_level(logging.WARNING)
    dsn = own_state
    with restartable("noida") as broker:
        settings = stack_settings(dsn, broker.bootstrap, partition_assignment=assignment,
                                  outbox_reconcile_seconds=1)
        async with running_stack(settings) as stack:
            batches = [await new_batch(stack, source_dsn, target_dsn, rows=20) for _ in range(BURST)]

            async def sync(batch_id: int) -> str:
                response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
                assert response.status_code == 200, response.text
                return str(response.json()["data"]["runId"])

            runs = await asyncio.gather(*(sync(b) for b in batches))
            broker.kill()  # within milliseconds of the last acknowledged Completed event
            await asyncio.to_thread(broker.start)

            await in_history(dsn, list(runs), within=90)
            async with asyncio.timeout(60):  # every published row is on the log again (or was never lost)
                while (code_out := await replay(settings))[0] != 0:
                    await asyncio.sleep(1)
        code, out = code_out
        assert code == 0, out
        assert "mismatches: 0" in out and f"runs checked: {BURST} (in progress 0" in out, out
        assert await events_published(dsn, settings.topics.events) >= 2 * BURST
    requeued = [r.getMessage() for r in caplog.records if "queued again" in r.getMessage()]
    logging.getLogger(__name__).warning("requeued after the kill: %s", requeued or "nothing was lost this time")

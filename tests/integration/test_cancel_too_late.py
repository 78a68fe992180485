"""A cancel is either in time or answered as too late (issue 14 item 6): once a run began to publish what it
wrote (an overwrite's swap), a cancel is answered 409 `同步已进入提交阶段，无法取消` and the run ends as it would
have; a cancel accepted before that point stops the run, whatever the worker's cached flag said."""

import asyncio
import uuid
from datetime import timedelta

import pytest

from schemas.events import RunPhase
from schemas.messages import CANCEL_TOO_LATE
from service.db import driver
from service.db.engine import make_engine, make_sessionmaker
from service.db.models import Batch, Run
from service.runs import lifecycle
from service.runs.outcomes import CancelRequested, CancelTooLate
from service.runs.recorder import RunRecorder
from service.runs.requests import request_cancel
from service.sync.errors import RunCancelled
from service.sync.model import ProgressUpdate
from tests.support.builders import create_empty_like_orders, create_orders, state_batch, table_fingerprint, unique
from tests.support.sql import execute, fetchval, run_row
from tests.support.stack import SOLO, create_batch, create_connection, running_stack, stack_settings, wait_for_run

SWAP_SECONDS = 3


@pytest.fixture
async def sessions(state_dsn):
    engine = make_engine(state_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    yield make_sessionmaker(engine)
    await engine.dispose()


async def slow_swap(target_dsn: str, table: str) -> None:
    """The overwrite's swap deletes the old rows first: make that statement take SWAP_SECONDS."""
    await execute(target_dsn, f"""
        CREATE OR REPLACE FUNCTION "{table}_slow"() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep({SWAP_SECONDS}); RETURN NULL; END $$""")
    await execute(target_dsn, f'CREATE TRIGGER slow BEFORE DELETE ON "{table}" FOR EACH STATEMENT '
                  f'EXECUTE FUNCTION "{table}_slow"()')


async def test_a_cancel_during_the_overwrite_swap_is_answered_409_and_the_run_succeeds(
        state_dsn, source_dsn, target_dsn, broker) -> None:
    table = unique("orders")
    await create_orders(source_dsn, table, 2000)
    await create_empty_like_orders(target_dsn, table)
    await slow_swap(target_dsn, table)
    async with running_stack(stack_settings(state_dsn, broker.bootstrap, **SOLO)) as stack:
        batch_id = await create_batch(
            stack, unique("b"), await create_connection(stack, unique("src"), source_dsn),
            await create_connection(stack, unique("tgt"), target_dsn), {"table": table},
            {"table": table, "mode": "overwrite"}, chunkSize=500)
        started = await stack.client.post(f"/integration/batch/{batch_id}/sync?wait=0", headers=stack.headers())
        run_id = started.json()["data"]["runId"]
        async with asyncio.timeout(30):
            while await fetchval(state_dsn, "SELECT finishing_at FROM runs WHERE id = $1::uuid", run_id) is None:
                await asyncio.sleep(0.02)
        cancel = await stack.client.post(f"/integration/batch/{batch_id}/cancel", headers=stack.headers())
        assert cancel.status_code == 409, cancel.text
        assert cancel.json()["message"] == CANCEL_TOO_LATE
        assert cancel.json()["data"]["runId"] == run_id
        run = await wait_for_run(stack, batch_id, run_id, within=30)
    assert run["status"] == "SUCCESS", run
    assert (await run_row(state_dsn, run_id))["cancel_requested_by"] is None, "a refused cancel is not recorded"
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)


class _Notifier:
    def notify(self) -> None:
        return None


async def a_running_run(sessions, worker: str) -> Run:
    batch_id = await state_batch(sessions)
    async with sessions.begin() as session:
        run = lifecycle.new_run(await session.get(Batch, batch_id), request_id=str(uuid.uuid4()),
                                correlation_id="c", reply_to=None, trigger="http", requested_by="alice",
                                owner=worker, lease_until=lifecycle.utcnow() + timedelta(seconds=30))
        session.add(run)
    async with driver.transaction(sessions) as conn:
        claimed = await lifecycle.claim(conn, run.id, worker, 30)
        assert claimed is not None
        return claimed


class _State:
    def __init__(self, settings, sessions) -> None:
        self.settings, self.sessions, self.requester = settings, sessions, None


async def test_a_cancel_accepted_before_the_swap_stops_the_run_though_the_worker_had_not_heard_of_it(
        state_dsn, sessions) -> None:
    from service.config import Settings

    run = await a_running_run(sessions, "w1")
    recorder = RunRecorder(sessions, run, "w1", Settings().topics, _Notifier(), progress_interval=3600)
    state = _State(Settings(), sessions)
    assert isinstance(await request_cancel(state, run.batch_id, "carol"), CancelRequested)
    assert not recorder.cancel_requested(), "the engine's last chunk check saw no cancel yet"
    with pytest.raises(RunCancelled):
        await recorder.on_phase(ProgressUpdate(chunk=1, records_read=1, records_written=1, total_estimate=None,
                                               checkpoint={}, phase=RunPhase.PUBLISHING))
    assert recorder.cancelled_by == "carol"
    assert await fetchval(state_dsn, "SELECT finishing_at FROM runs WHERE id = $1", run.id) is None


async def test_after_the_swap_began_a_cancel_is_too_late_and_not_recorded(state_dsn, sessions) -> None:
    from service.config import Settings

    run = await a_running_run(sessions, "w2")
    recorder = RunRecorder(sessions, run, "w2", Settings().topics, _Notifier(), progress_interval=3600)
    await recorder.on_phase(ProgressUpdate(chunk=1, records_read=1, records_written=1, total_estimate=None,
                                           checkpoint={}, phase=RunPhase.PUBLISHING))
    outcome = await request_cancel(_State(Settings(), sessions), run.batch_id, "carol")
    assert outcome == CancelTooLate(run.batch_id, run.id)
    assert await fetchval(state_dsn, "SELECT cancel_requested_by FROM runs WHERE id = $1", run.id) is None


async def test_a_cancel_learnt_at_the_swap_drops_what_the_run_staged(source_dsn, target_dsn) -> None:
    """The engine hears of the accepted cancel only from on_phase: it must abandon its staging, not leave it."""
    from schemas.api import WriteMode
    from service.connectors.registry import REGISTRY
    from service.connectors.sql.target import stage_parts
    from service.sync.engine import execute as run_engine
    from tests.integration.test_engine_sync import SOURCE_FILL, Recorder, pg, source_table, spec_for, target_like

    class CancelledAtTheSwap(Recorder):
        async def on_phase(self, update: ProgressUpdate) -> None:
            await super().on_phase(update)
            raise RunCancelled()

    src = await source_table(source_dsn, 250)
    tgt = await target_like(target_dsn)
    async with pg(target_dsn) as conn:
        await conn.execute(SOURCE_FILL.format(t=tgt, lo=5000, hi=5009))
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.OVERWRITE, chunk_size=100)
    with pytest.raises(RunCancelled):
        await run_engine(spec, CancelledAtTheSwap(), connectors=REGISTRY, connect_timeout=5)
    _, stage = stage_parts(tgt, str(spec.checkpoint_key))
    async with pg(target_dsn) as conn:
        assert await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname = $1", stage) == 0
        assert await conn.fetchval(f"SELECT count(*) FROM {tgt}") == 10, "the old rows stay"

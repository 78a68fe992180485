"""Rejected rows are told exactly once across a worker crash: a worker SIGKILLed mid-run, another resumes
the run, and P.rejected holds every refused row under one eventId each (a row told again after the resume
keeps its id, so a reader deduping on eventId sees each once)."""

import asyncio
import json
import signal

import asyncpg
import pytest

from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.processes import start_worker
from tests.support.signing import read_records
from tests.support.sql import run_row
from tests.support.stack import create_batch, create_connection, running_stack, stack_settings, wait_for_run

ROWS = 120_000
EVERY = 2_000
"""The target refuses every row whose id is a multiple of this (a CHECK constraint): 60 rows."""


@pytest.mark.slow
async def test_rejected_rows_survive_a_killed_worker_exactly_once(state_dsn, source_dsn, target_dsn, broker):
    settings = stack_settings(state_dsn, broker.bootstrap, lease_seconds=3)
    table = unique("orders")
    await create_orders(source_dsn, table, ROWS)
    await create_empty_like_orders(target_dsn, table)
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT not_round CHECK (id % {EVERY} <> 0)')
    finally:
        await conn.close()
    first = start_worker(settings, "worker-a")
    second = None
    try:
        async with running_stack(settings, worker=False) as stack:
            batch_id = await create_batch(
                stack, unique("batch"), await create_connection(stack, unique("src"), source_dsn),
                await create_connection(stack, unique("tgt"), target_dsn), {"table": table},
                {"table": table, "mode": "append"}, chunkSize=1000, errorLimit={"records": 100})
            response = await stack.client.post(f"/integration/batch/{batch_id}/sync?wait=0", headers=stack.headers())
            run_id = response.json()["data"]["runId"]
            async with asyncio.timeout(60):
                while (await run_row(state_dsn, run_id))["records_written"] < 8_000:
                    await asyncio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed_at = await run_row(state_dsn, run_id)
            assert killed_at["status"] == "RUNNING", "the run finished before the kill: make it longer"
            assert killed_at["records_rejected"] >= 3  # live with the progress: rows 2000, 4000, 6000 at least

            second = start_worker(settings, "worker-b")
            run = await wait_for_run(stack, batch_id, run_id, within=120)

        assert run["status"] == "SUCCESS", run
        assert (run["recordsWritten"], run["recordsRejected"]) == (ROWS - ROWS // EVERY, ROWS // EVERY)
        assert (await run_row(state_dsn, run_id))["attempts"] == 2
        records = await read_records(settings.kafka_bootstrap, settings.topics.rejected, ROWS // EVERY)
        events = [json.loads(r.value) for r in records if r.key == str(batch_id).encode()]
        by_id = {e["eventId"]: e for e in events}
        assert sorted(e["row"]["id"] for e in by_id.values()) == list(range(EVERY, ROWS + 1, EVERY))
        assert all("not_round" in e["reason"] for e in by_id.values())
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(10)

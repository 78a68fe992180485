"""A worker SIGKILLed mid-run loses nothing: another worker resumes the run from its last checkpoint."""

import asyncio
import signal

from tests.support.builders import (
    count_duplicates,
    create_empty_like_orders,
    create_orders,
    table_fingerprint,
    unique,
)
from tests.support.processes import start_worker
from tests.support.sql import run_row
from tests.support.stack import create_batch, create_connection, running_stack, stack_settings, wait_for_run

ROWS = 300_000


async def test_a_killed_worker_is_replaced_and_the_run_finishes_exactly_once(state_dsn, source_dsn, target_dsn,
                                                                             broker):
    settings = stack_settings(state_dsn, broker.bootstrap, lease_seconds=3)
    table = unique("orders")
    await create_orders(source_dsn, table, ROWS)
    await create_empty_like_orders(target_dsn, table)
    first = start_worker(settings, "worker-a")
    second = None
    try:
        async with running_stack(settings, worker=False) as stack:
            source_id = await create_connection(stack, unique("src"), source_dsn)
            target_id = await create_connection(stack, unique("tgt"), target_dsn)
            batch_id = await create_batch(stack, unique("batch"), source_id, target_id, {"table": table},
                                          {"table": table, "mode": "append"}, chunkSize=1500)
            response = await stack.client.post(f"/integration/batch/{batch_id}/sync?wait=0", headers=stack.headers())
            run_id = response.json()["data"]["runId"]

            async with asyncio.timeout(60):
                while (await run_row(state_dsn, run_id))["records_written"] < 3000:
                    await asyncio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed_at = await run_row(state_dsn, run_id)
            assert killed_at["status"] == "RUNNING", "the run finished before the kill: make it longer"
            assert killed_at["records_written"] < ROWS

            second = start_worker(settings, "worker-b")
            run = await wait_for_run(stack, batch_id, run_id, within=120)

        assert run["status"] == "SUCCESS", run
        assert run["recordsWritten"] == ROWS
        final = await run_row(state_dsn, run_id)
        assert final["attempts"] == 2
        assert final["resumed_from_chunk"] >= killed_at["chunks"] > 0
        assert await count_duplicates(target_dsn, table) == 0
        assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(10)

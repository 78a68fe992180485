"""Orphaned runs are found by a periodic scan that does not wait for a partition assignment (issue 14 item 2):
a worker whose broker never answers (so it never gets a partition) still resumes the run of a dead worker."""

import asyncio

from service.bootstrap import run_worker
from tests.integration.test_bus_recovery import new_batch
from tests.support.brokers import free_port
from tests.support.sql import execute, run_row
from tests.support.stack import running_stack, stack_settings


async def test_a_worker_without_any_partition_resumes_a_dead_workers_run(state_dsn, source_dsn, target_dsn,
                                                                         broker) -> None:
    settings = stack_settings(state_dsn, broker.bootstrap, lease_seconds=2)
    async with running_stack(settings, worker=False, projector=False) as stack:
        batch_id = await new_batch(stack, source_dsn, target_dsn, rows=30)
        response = await stack.client.post(f"/integration/batch/{batch_id}/sync?wait=0", headers=stack.headers())
        run_id = response.json()["data"]["runId"]
    # its worker took it and died: RUNNING, a lease that ran out, and nobody will ever re-send the request
    await execute(state_dsn, "UPDATE runs SET status = 'RUNNING', owner = 'dead-worker', started_at = now(), "
                  "lease_until = now() - interval '1 second' WHERE id = $1::uuid", run_id)

    unreachable = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}",
                                              "worker_id": "lonely-worker"})
    worker = asyncio.create_task(run_worker(unreachable))
    try:
        async with asyncio.timeout(30):
            while (row := await run_row(state_dsn, run_id))["status"] == "RUNNING":
                assert not worker.done(), worker
                await asyncio.sleep(0.1)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert row["status"] == "SUCCESS", dict(row)
    assert row["records_written"] == 30

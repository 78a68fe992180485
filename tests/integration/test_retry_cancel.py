"""Retry resumes a failed run from its checkpoint; cancel stops a run at a chunk boundary."""

import pytest

from tests.support.builders import create_empty_like_orders, create_orders, table_fingerprint, unique
from tests.support.sql import execute, run_row
from tests.support.stack import SOLO, create_batch, create_connection, running_stack, stack_settings, wait_for_run


@pytest.fixture(scope="module")
async def stack(state_dsn, broker):
    async with running_stack(stack_settings(state_dsn, broker.bootstrap, **SOLO)) as running:
        yield running


async def test_retry_resumes_the_failed_run_from_its_checkpoint(stack, state_dsn, source_dsn, target_dsn):
    table = unique("orders")
    await create_orders(source_dsn, table, 5000)
    await create_empty_like_orders(target_dsn, table)
    await execute(target_dsn, f'ALTER TABLE "{table}" ADD CONSTRAINT below_3000 CHECK (id <= 3000)')
    batch_id = await create_batch(
        stack, unique("batch"), await create_connection(stack, unique("src"), source_dsn),
        await create_connection(stack, unique("tgt"), target_dsn), {"table": table},
        {"table": table, "mode": "append"}, chunkSize=1000,
    )
    not_yet = await stack.client.post(f"/integration/batch/{batch_id}/retry", headers=stack.headers())
    assert not_yet.status_code == 400 and not_yet.json()["message"] == "批次未处于失败状态"

    failed = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
    assert failed.status_code == 400 and failed.json()["message"].startswith("同步失败：")
    assert (await table_fingerprint(target_dsn, table))[0] == 3000
    await execute(target_dsn, f'ALTER TABLE "{table}" DROP CONSTRAINT below_3000')

    retried = await stack.client.post(f"/integration/batch/{batch_id}/retry", headers=stack.headers())

    assert retried.status_code == 200, retried.text
    assert retried.json()["data"]["recordsSynced"] == 5000
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)
    retry_run = await run_row(state_dsn, retried.json()["data"]["runId"])
    assert retry_run["trigger"] == "retry"
    assert retry_run["resumed_from_chunk"] == 3, "the retry must not read the first 3000 rows again"
    failed_detail = await stack.client.get(f"/integration/batch/{batch_id}/runs/{retry_run['resumed_from_run_id']}",
                                           headers=stack.headers())
    assert failed_detail.json()["data"]["status"] == "FAILED"

    again = await stack.client.post(f"/integration/batch/{batch_id}/retry", headers=stack.headers())
    assert again.status_code == 400 and again.json()["message"] == "批次未处于失败状态"


async def test_cancel_stops_a_run_and_records_who_cancelled(stack, state_dsn, source_dsn, target_dsn):
    table = unique("orders")
    await create_orders(source_dsn, table, 200_000)
    await create_empty_like_orders(target_dsn, table)
    batch_id = await create_batch(
        stack, unique("batch"), await create_connection(stack, unique("src"), source_dsn),
        await create_connection(stack, unique("tgt"), target_dsn), {"table": table},
        {"table": table, "mode": "overwrite"}, chunkSize=500,
    )
    nothing = await stack.client.post(f"/integration/batch/{batch_id}/cancel", headers=stack.headers())
    assert nothing.status_code == 400 and nothing.json()["message"] == "批次没有正在执行的同步"

    started = await stack.client.post(f"/integration/batch/{batch_id}/sync?wait=0", headers=stack.headers())
    run_id = started.json()["data"]["runId"]
    cancel = await stack.client.post(f"/integration/batch/{batch_id}/cancel",
                                     headers=stack.headers(["integration:batch:sync"], sub="carol"))
    assert cancel.status_code == 200 and cancel.json()["data"]["runId"] == run_id

    run = await wait_for_run(stack, batch_id, run_id)
    assert run["status"] == "CANCELLED"
    assert run["recordsWritten"] < 200_000
    assert (await run_row(state_dsn, run_id))["cancel_requested_by"] == "carol"
    assert (await table_fingerprint(target_dsn, table))[0] == 0, "a cancelled overwrite leaves the target as it was"

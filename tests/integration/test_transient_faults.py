"""Transient faults inside a run are ridden out (docs/spec.md §9): a database restarted or frozen in the
middle of a run, in each write mode, and the target still equals the source afterwards; a cancel does not
wait for a frozen database."""

import asyncio

import pytest
from prometheus_client import REGISTRY as METRICS

from schemas.events import ErrorCode
from tests.support.builders import count_duplicates, create_orders, table_fingerprint, unique
from tests.support.own_postgres import OwnPostgres, own_postgres
from tests.support.sql import execute, run_row
from tests.support.stack import (
    SOLO,
    create_batch,
    create_connection,
    running_stack,
    stack_settings,
    wait_for_run,
)

pytestmark = pytest.mark.slow

ROWS = 200_000
"""Enough that a run is still writing when its database goes down (each restart test proves it met the outage)."""
OUTAGE_SECONDS = 6
"""Down long enough for the retry back-off (0.2 s doubling, full jitter) to reach its 5 s cap, a tenth of the 60 s
budget the restart tests give a run."""
MODES = ["append", "overwrite", "upsert"]
FREEZE_SECONDS = 12


@pytest.fixture(scope="module")
def server():
    with own_postgres() as running:
        yield running


async def prepare(mode: str, source_dsn: str, target_dsn: str) -> str:
    """A source of ROWS orders and a target the mode has to correct: stale extra rows for an overwrite,
    changed rows for an upsert."""
    table = unique("orders")
    await create_orders(source_dsn, table, ROWS)
    if mode == "overwrite":
        await create_orders(target_dsn, table, 2_000, start=ROWS + 1)
    elif mode == "upsert":
        await create_orders(target_dsn, table, 5_000)
        await execute(target_dsn, f'UPDATE "{table}" SET note = \'stale\'')
    else:
        await create_orders(target_dsn, table, 0)
    return table


async def start_run(stack, mode: str, source_dsn: str, target_dsn: str, table: str) -> tuple[int, str]:
    source_id = await create_connection(stack, unique("src"), source_dsn)
    target_id = await create_connection(stack, unique("tgt"), target_dsn)
    target = {"table": table, "mode": mode, **({"keyColumns": ["id"]} if mode == "upsert" else {})}
    batch_id = await create_batch(stack, unique("batch"), source_id, target_id, {"table": table}, target,
                                  chunkSize=1_000)
    response = await stack.client.post(f"/integration/batch/{batch_id}/sync?wait=0", headers=stack.headers())
    assert response.status_code == 202, response.text
    return batch_id, response.json()["data"]["runId"]


async def mid_run(state_dsn: str, run_id: str, rows: int = 20_000) -> None:
    async with asyncio.timeout(60):
        while (row := await run_row(state_dsn, run_id)) is None or row["records_written"] < rows:
            assert row is None or row["status"] in ("PENDING", "RUNNING"), dict(row)
            await asyncio.sleep(0.02)
    assert row["status"] == "RUNNING" and row["records_written"] < ROWS, "the run ended before the fault"


async def assert_exact(source_dsn: str, target_dsn: str, table: str) -> None:
    assert await count_duplicates(target_dsn, table) == 0
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)


@pytest.mark.parametrize("side", ["target", "source"])
@pytest.mark.parametrize("mode", MODES)
async def test_a_database_restarted_mid_run_is_ridden_out(mode, side, server: OwnPostgres, state_dsn, target_dsn,
                                                          source_dsn, broker):
    source, target = (server.dsn, target_dsn) if side == "source" else (source_dsn, server.dsn)
    table = await prepare(mode, source, target)
    settings = stack_settings(state_dsn, broker.bootstrap, transient_retry_seconds=60, **SOLO)
    async with running_stack(settings) as stack:
        batch_id, run_id = await start_run(stack, mode, source, target, table)
        await mid_run(state_dsn, run_id)
        before = retried_on(side)
        await asyncio.to_thread(server.stop)
        at_stop = await run_row(state_dsn, run_id)
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(server.start)
        run = await wait_for_run(stack, batch_id, run_id, within=180)
    assert run["status"] == "SUCCESS", run
    assert retried_on(side) > before, (f"the run never met the {side}'s outage: {at_stop['records_written']} of "
                                       f"{ROWS} rows written and {at_stop['status']} when it went down")
    await assert_exact(source, target, table)


async def test_an_outage_longer_than_the_budget_fails_the_run_with_the_reason(server: OwnPostgres, state_dsn,
                                                                              source_dsn, broker):
    table = await prepare("append", source_dsn, server.dsn)
    settings = stack_settings(state_dsn, broker.bootstrap, transient_retry_seconds=3, **SOLO)
    async with running_stack(settings) as stack:
        batch_id, run_id = await start_run(stack, "append", source_dsn, server.dsn, table)
        await mid_run(state_dsn, run_id)
        await asyncio.to_thread(server.stop)
        try:
            run = await wait_for_run(stack, batch_id, run_id, within=60)
        finally:
            await asyncio.to_thread(server.start)
    assert run["status"] == "FAILED" and "连接被拒绝" in run["message"], run


def retried(error_code: str) -> float:
    """Transient errors of this code retried in place so far in this process (the stack runs in it)."""
    return METRICS.get_sample_value("batchsync_transient_retries_total", {"error_code": error_code}) or 0.0


def retried_on(side: str) -> float:
    """Transient errors of the source's (or the target's) codes retried in place so far in this process."""
    return sum(retried(code.value) for code in ErrorCode if code.value.startswith(f"{side.upper()}_"))


async def test_a_run_frozen_on_its_target_finishes_exact_after_the_thaw(server: OwnPostgres, state_dsn, source_dsn,
                                                                       broker):
    """While the target is frozen nothing it sends can end an operation, so a TARGET_ERROR retried during the
    freeze is the I/O timeout firing and the attempt letting go of the frozen server (its connections, a merge in
    flight) instead of waiting for the thaw. Read from the retry counter, not from the log."""
    table = await prepare("upsert", source_dsn, server.dsn)
    settings = stack_settings(state_dsn, broker.bootstrap, transient_retry_seconds=60, io_timeout_seconds=2)
    clock = asyncio.get_running_loop().time
    async with running_stack(settings) as stack:
        batch_id, run_id = await start_run(stack, "upsert", source_dsn, server.dsn, table)
        await mid_run(state_dsn, run_id)
        before, retried_after = retried("TARGET_ERROR"), None
        server.freeze()
        frozen = clock()
        try:
            while clock() - frozen < FREEZE_SECONDS:
                if retried_after is None and retried("TARGET_ERROR") > before:
                    retried_after = clock() - frozen
                await asyncio.sleep(0.05)
            stalled = (await run_row(state_dsn, run_id))["records_written"]  # the rows written before the freeze
        finally:
            server.thaw()
        thawed = clock()
        assert retried_after is not None, f"no retry during the {FREEZE_SECONDS} s freeze: the I/O timeout never let go"
        async with asyncio.timeout(60):  # the first chunk written after the thaw
            while (row := await run_row(state_dsn, run_id))["status"] == "RUNNING":
                if row["records_written"] > stalled:
                    break
                await asyncio.sleep(0.05)
        resumed = clock() - thawed
        run = await wait_for_run(stack, batch_id, run_id, within=180)
        finished = clock() - thawed
    print(f"frozen target: retried {retried_after:.1f} s into the freeze; after the thaw, the next chunk came "
          f"{resumed:.1f} s and the end {finished:.1f} s later")
    assert run["status"] == "SUCCESS", run
    await assert_exact(source_dsn, server.dsn, table)


async def test_a_cancel_does_not_wait_for_a_frozen_target(server: OwnPostgres, state_dsn, source_dsn, broker):
    table = await prepare("overwrite", source_dsn, server.dsn)
    settings = stack_settings(state_dsn, broker.bootstrap, io_timeout_seconds=300, **SOLO)
    async with running_stack(settings) as stack:
        batch_id, run_id = await start_run(stack, "overwrite", source_dsn, server.dsn, table)
        await mid_run(state_dsn, run_id)
        server.freeze()
        try:
            response = await stack.client.post(f"/integration/batch/{batch_id}/cancel", headers=stack.headers())
            assert response.status_code == 200, response.text
            started = asyncio.get_running_loop().time()
            run = await wait_for_run(stack, batch_id, run_id, within=30)
            took = asyncio.get_running_loop().time() - started
        finally:
            server.thaw()
    assert run["status"] == "CANCELLED", run
    assert took < 15, f"the cancel took {took:.1f} s"
    fingerprint = await table_fingerprint(server.dsn, table)
    assert fingerprint[0] == 2_000, "an interrupted overwrite must leave the old rows in place"

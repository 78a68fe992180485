"""One batch spread over many workers (docs/spec.md §10): worker processes share the slices of a split run, a
killed worker's slice is resumed from its own checkpoint, an overwrite is published once, a retry re-runs only
the slice that failed."""

import asyncio
import signal
import subprocess

import asyncpg
import pytest
from typer.testing import CliRunner

from service.cli.audit import audit_app
from tests.support.builders import count_duplicates, create_empty_like_orders, create_orders, table_fingerprint, unique
from tests.support.processes import start_worker
from tests.support.sql import execute, fetchval, run_row
from tests.support.stack import create_batch, create_connection, running_stack, stack_settings, wait_for_run

pytestmark = pytest.mark.slow

ROWS = 400_000
PER_SLICE = 45_000  # 400k rows: 9 slices or more


async def slow_target(dsn: str, table: str, millis_per_100_rows: int = 2) -> None:
    """A target whose rows cost the writer waiting (not CPU), as a remote or throttled system would: the case
    where more workers help on this 2-core machine."""
    await execute(dsn, f"""
        CREATE OR REPLACE FUNCTION "{table}_slow"() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.id % 100 = 0 THEN PERFORM pg_sleep({millis_per_100_rows} / 1e3); END IF; RETURN NEW; END $$;
        CREATE TRIGGER "{table}_slow" BEFORE INSERT ON "{table}" FOR EACH ROW EXECUTE FUNCTION "{table}_slow"();
    """)


def stop(*processes: subprocess.Popen | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


async def start_split_run(stack, source_dsn: str, target_dsn: str, table: str, mode: str, chunk_size: int,
                          split: dict) -> tuple[int, str]:
    """A split batch of `table` from source to target, and the run of its sync (not waited for)."""
    source_id = await create_connection(stack, unique("src"), source_dsn)
    target_id = await create_connection(stack, unique("tgt"), target_dsn)
    batch_id = await create_batch(stack, unique("batch"), source_id, target_id, {"table": table},
                                  {"table": table, "mode": mode}, chunkSize=chunk_size, split=split)
    response = await stack.client.post(f"/integration/batch/{batch_id}/sync?wait=0", headers=stack.headers())
    return batch_id, response.json()["data"]["runId"]


async def audit_replay(settings, *args: str):
    """`batchsync audit replay`: the history rebuilt from the events alone, BatchSliceCompleted included."""
    env = {"BATCHSYNC_DATABASE_URL": settings.database_url, "BATCHSYNC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "BATCHSYNC_TOPIC_PREFIX": settings.topic_prefix}
    return await asyncio.to_thread(CliRunner().invoke, audit_app, ["replay", "--settle-seconds", "0", *args],
                                   env=env)


async def slices_of(stack, batch_id: int, run_id: str) -> list[dict]:
    response = await stack.client.get(f"/integration/batch/{batch_id}/runs/{run_id}", headers=stack.headers())
    return response.json()["data"]["slices"] or []


async def test_two_worker_processes_share_the_slices_of_one_run_and_the_target_is_exact(
        state_dsn, source_dsn, target_dsn, broker):
    settings = stack_settings(state_dsn, broker.bootstrap, worker_concurrency=2)
    table = unique("orders")
    await create_orders(source_dsn, table, ROWS)
    await create_empty_like_orders(target_dsn, table)
    await slow_target(target_dsn, table)
    workers = [start_worker(settings, "worker-a"), start_worker(settings, "worker-b")]
    try:
        async with running_stack(settings, worker=False) as stack:
            batch_id, run_id = await start_split_run(stack, source_dsn, target_dsn, table, "append", 5000,
                                                        {"column": "id", "maxRowsPerSlice": PER_SLICE})
            run = await wait_for_run(stack, batch_id, run_id, within=240)
            slices = await slices_of(stack, batch_id, run_id)
            async with asyncio.timeout(30):  # the projector folds every BatchSliceCompleted
                while (await fetchval(state_dsn, "SELECT slices_completed FROM run_history WHERE run_id = $1::uuid",
                                      run_id) or 0) < len(slices):
                    await asyncio.sleep(0.1)
    finally:
        stop(*workers)

    assert run["status"] == "SUCCESS", run
    assert len(slices) >= 8
    assert all(s["status"] == "SUCCESS" for s in slices), slices
    assert {s["workerId"] for s in slices} == {"worker-a", "worker-b"}, "every slice ran on one worker"
    assert run["recordsWritten"] == sum(s["recordsWritten"] for s in slices) == ROWS
    assert run["reconciled"] is True and run["sourceCount"] == run["targetCount"] == ROWS
    assert await count_duplicates(target_dsn, table) == 0
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)
    assert [s["range"]["nulls"] for s in slices].count(True) == 1, "one slice takes the NULLs"
    assert [s["range"]["lo"] for s in slices].count(None) == [s["range"]["hi"] for s in slices].count(None) == 1


async def test_a_worker_killed_mid_slice_is_resumed_from_that_slices_checkpoint(
        state_dsn, source_dsn, target_dsn, broker):
    settings = stack_settings(state_dsn, broker.bootstrap, worker_concurrency=2, lease_seconds=3)
    table = unique("orders")
    await create_orders(source_dsn, table, ROWS)
    await create_empty_like_orders(target_dsn, table)
    await slow_target(target_dsn, table)
    first = start_worker(settings, "worker-a")
    second = None
    try:
        async with running_stack(settings, worker=False) as stack:
            batch_id, run_id = await start_split_run(stack, source_dsn, target_dsn, table, "append", 2000,
                                                        {"column": "id", "slices": 4})
            async with asyncio.timeout(60):  # a slice of worker-a is under way with some chunks committed
                while not any(s["status"] == "RUNNING" and s["recordsWritten"] >= 4000
                              for s in await slices_of(stack, batch_id, run_id)):
                    await asyncio.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed = {s["slice"]: s for s in await slices_of(stack, batch_id, run_id)}
            assert (await run_row(state_dsn, run_id))["status"] == "RUNNING"
            second = start_worker(settings, "worker-b")
            run = await wait_for_run(stack, batch_id, run_id, within=240)
            slices = await slices_of(stack, batch_id, run_id)
    finally:
        stop(first, second)

    assert run["status"] == "SUCCESS", run
    resumed = [s for s in slices if killed[s["slice"]]["status"] == "RUNNING"]
    assert resumed and all(s["workerId"] == "worker-b" and s["attempts"] >= 2 for s in resumed), slices
    assert await count_duplicates(target_dsn, table) == 0
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)


async def test_a_split_overwrite_is_published_once_and_never_seen_half_written(
        state_dsn, source_dsn, target_dsn, broker):
    settings = stack_settings(state_dsn, broker.bootstrap, worker_concurrency=3)
    table = unique("orders")
    old_rows, new_rows = 1_000, 120_000
    await create_orders(source_dsn, table, new_rows)
    await create_orders(target_dsn, table, old_rows, start=10_000_000)
    seen: set[int] = set()
    stop_reading = asyncio.Event()

    async def reader() -> None:
        conn = await asyncpg.connect(target_dsn)
        try:
            while not stop_reading.is_set():
                seen.add(await conn.fetchval(f'SELECT count(*) FROM "{table}"'))
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    async with running_stack(settings) as stack:
        reading = asyncio.create_task(reader())
        batch_id, run_id = await start_split_run(stack, source_dsn, target_dsn, table, "overwrite", 3000,
                                                    {"column": "created_at", "maxRowsPerSlice": 30_000})
        run = await wait_for_run(stack, batch_id, run_id, within=120)
        stop_reading.set()
        await reading
        slices = await slices_of(stack, batch_id, run_id)

    assert run["status"] == "SUCCESS", run
    assert len(slices) >= 4
    assert seen <= {old_rows, new_rows}, f"a reader saw the table half-written: {sorted(seen)}"
    assert new_rows in seen
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)
    leftovers = await fetchval(target_dsn, "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%' || $1 || '%' "
                                           "AND tablename <> $1", table)
    assert leftovers == 0, "a slice's stage was left behind"


async def test_a_retry_re_runs_only_the_slice_that_failed(state_dsn, source_dsn, target_dsn, broker):
    settings = stack_settings(state_dsn, broker.bootstrap, worker_concurrency=2)
    table = unique("orders")
    rows = 80_000
    await create_orders(source_dsn, table, rows)
    await create_empty_like_orders(target_dsn, table)
    await execute(target_dsn, f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_no_bad" CHECK (id <> 50001)')
    async with running_stack(settings) as stack:
        batch_id, first_id = await start_split_run(stack, source_dsn, target_dsn, table, "append", 2000,
                                                    {"column": "id", "slices": 4})
        first = await wait_for_run(stack, batch_id, first_id, within=120)
        first_slices = await slices_of(stack, batch_id, first_id)
        assert first["status"] == "FAILED", first
        failed = [s["slice"] for s in first_slices if s["status"] == "FAILED"]
        assert len(failed) == 1 and "分片" in first["message"], first

        await execute(target_dsn, f'ALTER TABLE "{table}" DROP CONSTRAINT "{table}_no_bad"')
        response = await stack.client.post(f"/integration/batch/{batch_id}/retry?wait=0", headers=stack.headers())
        assert response.status_code in (200, 202), response.text
        retry_id = response.json()["data"]["runId"]
        retry = await wait_for_run(stack, batch_id, retry_id, within=120)
        retry_slices = await slices_of(stack, batch_id, retry_id)
        async with asyncio.timeout(30):  # projected: both runs ended, the retry told one slice (the one it ran)
            while await fetchval(state_dsn, "SELECT count(*) FROM run_history WHERE run_id = ANY($1::uuid[]) AND "
                                 "status IN ('SUCCESS', 'FAILED') AND slices_completed > 0",
                                 [first_id, retry_id]) < 2:
                await asyncio.sleep(0.1)
        audit = await audit_replay(settings, "--batch", str(batch_id))
        assert audit.exit_code == 0, audit.stdout + audit.stderr
        folded = await fetchval(state_dsn, "SELECT array[slices_completed, slices_failed] FROM run_history "
                                "WHERE run_id = $1::uuid", first_id)
        assert folded == [4, 1]

    assert retry["status"] == "SUCCESS", retry
    assert [s["range"] for s in retry_slices] == [s["range"] for s in first_slices], "the plan is kept"
    for part in retry_slices:
        if part["slice"] in failed:
            assert part["carriedFromRunId"] is None and part["attempts"] == 1
        else:
            assert part["carriedFromRunId"] == first_id and part["attempts"] == 0, part
    assert await count_duplicates(target_dsn, table) == 0
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)


@pytest.mark.parametrize(("change", "fragment"), [
    ({"source": {"query": "SELECT 1 AS id"}}, "query"),
    ({"source": {"table": "t", "cursorColumn": "id"}}, "cursorColumn"),
])
async def test_a_split_that_cannot_work_is_refused_when_the_batch_is_saved(state_dsn, broker, change, fragment):
    settings = stack_settings(state_dsn, broker.bootstrap)
    async with running_stack(settings, worker=False, projector=False) as stack:
        body = {"name": unique("b"), "sourceConnectionId": 1, "targetConnectionId": 1,
                "source": {"table": "t"}, "target": {"table": "t"}, "split": {"column": "id"}, **change}
        response = await stack.client.post("/integration/batch", headers=stack.headers(), json=body)
    assert response.status_code == 400, response.text
    assert fragment in response.text


async def test_a_cancel_stops_every_slice(state_dsn, source_dsn, target_dsn, broker):
    settings = stack_settings(state_dsn, broker.bootstrap, worker_concurrency=2)
    table = unique("orders")
    await create_orders(source_dsn, table, 200_000)
    await create_empty_like_orders(target_dsn, table)
    await slow_target(target_dsn, table, millis_per_100_rows=5)
    async with running_stack(settings) as stack:
        batch_id, run_id = await start_split_run(stack, source_dsn, target_dsn, table, "append", 1000,
                                                    {"column": "id", "slices": 6})
        async with asyncio.timeout(60):
            while not any(s["recordsWritten"] > 0 for s in await slices_of(stack, batch_id, run_id)):
                await asyncio.sleep(0.05)
        response = await stack.client.post(f"/integration/batch/{batch_id}/cancel", headers=stack.headers())
        assert response.status_code == 200, response.text
        run = await wait_for_run(stack, batch_id, run_id, within=60)
        async with asyncio.timeout(30):  # slices under way stop at their next chunk
            while any(s["status"] in ("PENDING", "RUNNING") for s in await slices_of(stack, batch_id, run_id)):
                await asyncio.sleep(0.1)
        slices = await slices_of(stack, batch_id, run_id)
        written = await fetchval(target_dsn, f'SELECT count(*) FROM "{table}"')
        await asyncio.sleep(1.0)
        assert await fetchval(target_dsn, f'SELECT count(*) FROM "{table}"') == written, "a slice went on writing"

    assert run["status"] == "CANCELLED", run
    assert {s["status"] for s in slices} <= {"CANCELLED", "SUCCESS"}
    assert any(s["status"] == "CANCELLED" for s in slices)
    assert written < 200_000


async def test_a_dry_run_of_a_split_batch_shows_its_plan_and_names_a_column_that_cannot_split(
        state_dsn, source_dsn, target_dsn, broker):
    settings = stack_settings(state_dsn, broker.bootstrap)
    table = unique("orders")
    await create_orders(source_dsn, table, 10_000)
    await create_empty_like_orders(target_dsn, table)
    async with running_stack(settings, worker=False, projector=False) as stack:
        source_id = await create_connection(stack, unique("src"), source_dsn)
        target_id = await create_connection(stack, unique("tgt"), target_dsn)
        planned = await create_batch(stack, unique("batch"), source_id, target_id, {"table": table},
                                     {"table": table, "mode": "append"}, split={"column": "id", "slices": 4})
        text = await create_batch(stack, unique("batch"), source_id, target_id, {"table": table},
                                  {"table": table, "mode": "append"}, split={"column": "customer"})
        check = (await stack.client.post(f"/integration/batch/{planned}/check", headers=stack.headers())).json()
        refused = (await stack.client.post(f"/integration/batch/{text}/check", headers=stack.headers())).json()

    assert check["data"]["ok"] is True, check
    assert [(s["lo"], s["hi"]) for s in check["data"]["slices"]] == [
        (None, 2501), (2501, 5001), (5001, 7501), (7501, None)]
    assert refused["data"]["ok"] is False and refused["data"]["slices"] is None
    assert [p["field"] for p in refused["data"]["problems"]] == ["split.column"], refused

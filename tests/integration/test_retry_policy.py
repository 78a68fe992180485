"""The retry policy on real PostgreSQL and the real broker (docs/spec.md §9): a run that failed on a transient
error (connection refused) is resumed from its checkpoint after the back-off with `trigger: retry`,
`requestedBy: retry-policy`, up to `maxAttempts`, each attempt in the history; two schedulers retry it once; a
terminal failure (a missing target table) is never retried; and audit replay understands `BatchSyncRetryScheduled`."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from typer.testing import CliRunner

from service.cli.audit import audit_app
from service.db.engine import make_engine, make_sessionmaker
from service.scheduling.retries import retry_request_id
from service.scheduling.scheduler import Scheduler
from tests.support.builders import create_empty_like_orders, create_orders, table_fingerprint, unique
from tests.support.databases import migrated_database
from tests.support.loopback import closed_port
from tests.support.scheduling import all_finished, eventually, runs_of
from tests.support.stack import Stack, create_batch, create_connection, running_stack, stack_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def state(broker):
    with migrated_database("bs_retry") as dsn:
        yield dsn


@pytest.fixture(scope="module")
async def stack(state, broker) -> AsyncIterator[Stack]:
    settings = stack_settings(state, broker.bootstrap, transient_retry_seconds=0)
    async with running_stack(settings) as running:
        yield running


@contextlib.asynccontextmanager
async def schedulers(stack: Stack, count: int = 2) -> AsyncIterator[None]:
    """`count` schedulers ticking every 0.1 s, each with its own engine, as separate processes would."""
    engines = [make_engine(stack.settings.database_url or "") for _ in range(count)]

    async def ticking(scheduler: Scheduler) -> None:
        while True:
            await scheduler.tick()
            await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(ticking(Scheduler(stack.settings, make_sessionmaker(e)))) for e in engines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for engine in engines:
            await engine.dispose()


async def refused_source(stack: Stack) -> tuple[int, str]:
    name = unique("down")
    return await create_connection(stack, name, f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"), name


async def sync(stack: Stack, batch_id: int) -> dict:
    response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
    return response.json()


async def history(stack: Stack, batch_id: int) -> list[dict]:
    response = await stack.client.get(f"/integration/batch/{batch_id}/history", headers=stack.headers())
    return response.json()["data"]["rows"]


async def test_a_transient_failure_is_resumed_until_it_succeeds(stack, source_dsn, target_dsn):
    table, target = unique("orders"), unique("orders")
    await create_orders(source_dsn, table, 500)
    await create_empty_like_orders(target_dsn, target)
    src, src_name = await refused_source(stack)
    tgt = await create_connection(stack, unique("tgt"), target_dsn)
    batch_id = await create_batch(stack, unique("retry"), src, tgt, {"table": table}, {"table": target},
                                  chunkSize=100, retryPolicy={"maxAttempts": 3, "backoffSeconds": 1})
    failed = await sync(stack, batch_id)
    assert failed["code"] == 400 and "连接被拒绝" in failed["message"], failed
    dsn = stack.settings.asyncpg_dsn
    async with schedulers(stack):
        first = await eventually(lambda: _runs_at_least(dsn, batch_id, 2, terminal=True), within=20)
        assert first[1]["status"] == "FAILED" and first[1]["error_code"] == "SOURCE_REFUSED"
        # the source comes back before the second attempt (2 s after the first retry failed)
        response = await stack.client.put(f"/integration/connection/{src}", headers=stack.headers(),
                                          json={"name": src_name, "type": "postgresql", "url": source_dsn})
        assert response.status_code == 200, response.text
        runs = await eventually(lambda: _runs_at_least(dsn, batch_id, 3, terminal=True), within=20)
        await asyncio.sleep(2.5)  # a success is never retried: no fourth run comes
    runs = await runs_of(dsn, batch_id)
    assert [(r["trigger"], r["requested_by"], r["status"]) for r in runs] == [
        ("http", "tester", "FAILED"), ("retry", "retry-policy", "FAILED"), ("retry", "retry-policy", "SUCCESS")]
    assert runs[1]["resumed_from_run_id"] == runs[0]["id"] and runs[2]["resumed_from_run_id"] == runs[1]["id"]
    assert runs[1]["request_id"] == retry_request_id(batch_id, runs[0]["id"])
    assert await table_fingerprint(target_dsn, target) == await table_fingerprint(source_dsn, table)

    rows = await eventually(lambda: _history_settled(stack, batch_id, 3))
    by_run = {r["runId"]: r for r in rows}
    assert by_run[str(runs[0]["id"])]["retriedByRunId"] == str(runs[1]["id"])
    assert by_run[str(runs[0]["id"])]["retryAttempt"] == 1
    assert by_run[str(runs[1]["id"])]["retriedByRunId"] == str(runs[2]["id"])
    assert by_run[str(runs[1]["id"])]["retryAttempt"] == 2
    assert by_run[str(runs[2]["id"])]["trigger"] == "retry" and by_run[str(runs[2]["id"])]["retriedByRunId"] is None

    replay = await asyncio.to_thread(CliRunner().invoke, audit_app,
                                     ["replay", "--settle-seconds", "0", "--batch", str(batch_id)],
                                     env={"BATCHSYNC_DATABASE_URL": stack.settings.database_url,
                                          "BATCHSYNC_KAFKA_BOOTSTRAP": stack.settings.kafka_bootstrap,
                                          "BATCHSYNC_TOPIC_PREFIX": stack.settings.topic_prefix})
    assert replay.exit_code == 0, replay.stdout + replay.stderr


async def test_retries_stop_at_max_attempts(stack, source_dsn, target_dsn):
    src, _ = await refused_source(stack)
    tgt = await create_connection(stack, unique("tgt"), target_dsn)
    batch_id = await create_batch(stack, unique("retry"), src, tgt, {"table": "orders"}, {"table": "orders"},
                                  retryPolicy={"maxAttempts": 2, "backoffSeconds": 0.2})
    assert (await sync(stack, batch_id))["code"] == 400
    dsn = stack.settings.asyncpg_dsn
    async with schedulers(stack):
        await eventually(lambda: _runs_at_least(dsn, batch_id, 3, terminal=True), within=20)
        await asyncio.sleep(2.5)  # the next attempt would have come 0.8 s after the last failure
    runs = await runs_of(dsn, batch_id)
    assert [(r["trigger"], r["status"], r["error_code"]) for r in runs] == [
        ("http", "FAILED", "SOURCE_REFUSED"), ("retry", "FAILED", "SOURCE_REFUSED"),
        ("retry", "FAILED", "SOURCE_REFUSED")]


@pytest.mark.parametrize("policy", [{"maxAttempts": 3, "backoffSeconds": 0}, None])
async def test_a_terminal_failure_or_no_policy_is_never_retried(stack, source_dsn, target_dsn, policy):
    src = await create_connection(stack, unique("src"), source_dsn)
    tgt = await create_connection(stack, unique("tgt"), target_dsn)
    table, missing = unique("orders"), unique("missing")
    await create_orders(source_dsn, table, 10)
    extra = {} if policy is None else {"retryPolicy": policy}
    batch_id = await create_batch(stack, unique("retry"), src, tgt, {"table": table}, {"table": missing}, **extra)
    answer = await sync(stack, batch_id)
    assert answer["code"] == 400 and missing in answer["message"], answer
    async with schedulers(stack):
        await asyncio.sleep(2)
    runs = await runs_of(stack.settings.asyncpg_dsn, batch_id)
    assert [(r["trigger"], r["error_code"]) for r in runs] == [("http", "TARGET_ERROR")]  # the table is missing


async def test_retry_policy_is_shown_and_validated(stack, source_dsn):
    src = await create_connection(stack, unique("src"), source_dsn)
    base = {"name": unique("b"), "sourceConnectionId": src, "source": {"table": "t"}, "targetConnectionId": src,
            "target": {"table": "t"}}
    created = await stack.client.post("/integration/batch", headers=stack.headers(),
                                      json={**base, "retryPolicy": {"maxAttempts": 2}})
    assert created.json()["data"]["retryPolicy"] == {"maxAttempts": 2, "backoffSeconds": 60.0}
    for bad, field in (({"maxAttempts": -1}, "maxAttempts"), ({"backoffSeconds": -5}, "backoffSeconds"),
                       ({"maxAttempts": 1, "tries": 3}, "tries")):
        response = await stack.client.post("/integration/batch", headers=stack.headers(),
                                           json={**base, "name": unique("b"), "retryPolicy": bad})
        assert response.status_code == 400 and field in response.json()["message"], response.text


async def _runs_at_least(dsn: str, batch_id: int, count: int, terminal: bool) -> list | None:
    """The runs when there are `count` (all finished if `terminal`), judged on one read: a second read could see
    a run finish that the returned rows still show RUNNING."""
    runs = await runs_of(dsn, batch_id)
    if len(runs) < count or (terminal and not all_finished(runs)):
        return None
    return runs


async def _history_settled(stack: Stack, batch_id: int, count: int) -> list[dict] | None:
    rows = await history(stack, batch_id)
    finished = [r for r in rows if r["status"] in ("SUCCESS", "FAILED")]
    linked = [r for r in rows if r["retriedByRunId"]]
    return rows if len(finished) == count and len(linked) == count - 1 else None

"""Schedules on real PostgreSQL and the real broker (docs/spec.md §9): two schedulers fire each interval tick
once and the worker runs it once, a duplicate of a fire is answered from the ledger, a disabled schedule stops
firing and an enabled one resumes without a restart, a scheduler back from downtime fires once, and a fire
while the batch runs is recorded as skipped, folded into history and understood by `audit replay`."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest
from typer.testing import CliRunner

from producers.publisher import Publisher
from schemas.events import BatchSyncRequested, Trigger
from schemas.wire import encode, event_headers, event_key
from service.cli.audit import audit_app
from service.db.engine import make_engine, make_sessionmaker
from service.scheduling.scheduler import Scheduler
from service.scheduling.schedules import FireOutcome
from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.databases import migrated_database
from tests.support.scheduling import all_terminal, eventually, runs_of
from tests.support.sql import execute, fetch
from tests.support.stack import Stack, create_batch, create_connection, running_stack, stack_settings, wait_for_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def state(broker):
    with migrated_database("bs_sched") as dsn:
        yield dsn


@pytest.fixture(scope="module")
async def stack(state, broker) -> AsyncIterator[Stack]:
    settings = stack_settings(state, broker.bootstrap, scheduler_poll_seconds=0.1)
    async with running_stack(settings) as running:
        yield running


@contextlib.asynccontextmanager
async def scheduler(stack: Stack) -> AsyncIterator[Scheduler]:
    """A scheduler with its own engine, as a separate process would have."""
    engine = make_engine(stack.settings.database_url or "")
    try:
        yield Scheduler(stack.settings, make_sessionmaker(engine))
    finally:
        await engine.dispose()


async def orders_batch(stack: Stack, source_dsn: str, target_dsn: str, rows: int = 20, **extra: object) -> int:
    source, target = unique("orders"), unique("orders")
    await create_orders(source_dsn, source, rows)
    await create_empty_like_orders(target_dsn, target)
    src = await create_connection(stack, unique("src"), source_dsn)
    tgt = await create_connection(stack, unique("tgt"), target_dsn)
    return await create_batch(stack, unique("sched"), src, tgt, {"table": source},
                              {"table": target, "mode": "overwrite"}, **extra)


async def batch(stack: Stack, batch_id: int) -> dict:
    response = await stack.client.get(f"/integration/batch/{batch_id}", headers=stack.headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def edit_schedule(stack: Stack, batch_id: int, schedule: dict | None) -> dict:
    body = {k: v for k, v in (await batch(stack, batch_id)).items()
            if k in ("name", "sourceConnectionId", "source", "targetConnectionId", "target", "chunkSize")}
    response = await stack.client.put(f"/integration/batch/{batch_id}", headers=stack.headers(),
                                      json={**body, "schedule": schedule})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def fire_of(request_id: str) -> datetime:
    """The fire time in `schedule:<batchId>:<RFC 3339>`."""
    return datetime.fromisoformat(request_id.split(":", 2)[2].replace("Z", "+00:00"))


async def test_two_schedulers_fire_each_tick_once_and_the_worker_runs_it_once(stack, source_dsn, target_dsn):
    batch_id = await orders_batch(stack, source_dsn, target_dsn, schedule={"intervalSeconds": 2})
    shown = await batch(stack, batch_id)
    assert shown["schedule"] == {"cron": None, "intervalSeconds": 2, "timezone": "UTC", "enabled": True}
    next_fire = datetime.fromisoformat(shown["nextFireTime"].replace("Z", "+00:00"))
    assert next_fire.timestamp() % 2 == 0

    outcomes: list[tuple[int, str, FireOutcome]] = []

    async def ticking(which: int, scheduler: Scheduler) -> None:
        while True:
            tick = await scheduler.tick()
            outcomes.extend((which, f.request_id, f.outcome) for f in tick.fires if f.batch_id == batch_id)
            await asyncio.sleep(0.05)

    async with scheduler(stack) as first, scheduler(stack) as second:
        tasks = [asyncio.create_task(ticking(1, first)), asyncio.create_task(ticking(2, second))]
        await eventually(lambda: asyncio.sleep(0, len({r for _, r, _ in outcomes}) >= 3), within=15)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await edit_schedule(stack, batch_id, {"intervalSeconds": 2, "enabled": False})

    handled = [request_id for _, request_id, _ in outcomes]
    assert len(handled) == len(set(handled)) >= 3, outcomes  # each tick handled by one scheduler, once
    times = sorted(fire_of(r) for r in handled)
    assert all(b - a == timedelta(seconds=2) for a, b in zip(times, times[1:], strict=False)), times  # none lost
    fired = [request_id for _, request_id, outcome in outcomes if outcome is FireOutcome.FIRED]
    skipped = [request_id for _, request_id, outcome in outcomes if outcome is FireOutcome.SKIPPED]
    assert fired and len(fired) + len(skipped) == len(handled), outcomes  # a tick while a run was active: skipped
    await eventually(lambda: all_terminal(stack.settings.asyncpg_dsn, batch_id), within=30)
    runs = await runs_of(stack.settings.asyncpg_dsn, batch_id)
    assert sorted(r["request_id"] for r in runs) == sorted(fired)
    assert {(r["trigger"], r["requested_by"], r["status"]) for r in runs} == {("schedule", "scheduler", "SUCCESS")}

    # a third scheduler that published a fire again (or a redelivery) starts nothing: the worker's ledger
    duplicate = BatchSyncRequested(correlation_id="dup", batch_id=batch_id, producer="test", request_id=fired[0],
                                   requested_by="scheduler", trigger=Trigger.SCHEDULE)
    publisher = Publisher(stack.settings)
    await publisher.start()
    try:
        await publisher.send(stack.settings.topics.requested, encode(duplicate), event_key(duplicate),
                             event_headers(duplicate))
    finally:
        await publisher.stop()
    seen = await eventually(lambda: fetch(stack.settings.asyncpg_dsn,
                                          "SELECT seen_count FROM request_ledger WHERE request_id = $1 "
                                          "AND seen_count = 2", fired[0]))
    assert seen[0]["seen_count"] == 2
    assert len(await runs_of(stack.settings.asyncpg_dsn, batch_id)) == len(fired)


async def test_disabling_stops_fires_and_enabling_resumes_them_without_a_restart(stack, source_dsn, target_dsn):
    batch_id = await orders_batch(stack, source_dsn, target_dsn, schedule={"intervalSeconds": 1, "enabled": False})
    assert (await batch(stack, batch_id))["nextFireTime"] is None
    async with scheduler(stack) as running:
        for _ in range(25):  # 2.5 s: two fire times passed
            assert not [f for f in (await running.tick()).fires if f.batch_id == batch_id]
            await asyncio.sleep(0.1)
        enabled = await edit_schedule(stack, batch_id, {"intervalSeconds": 1})
        assert enabled["nextFireTime"] is not None

        async def fired() -> list:
            return [f for f in (await running.tick()).fires if f.batch_id == batch_id]

        assert (await eventually(fired, within=5))[0].outcome is FireOutcome.FIRED
        disabled = await edit_schedule(stack, batch_id, {"intervalSeconds": 1, "enabled": False})
        assert disabled["nextFireTime"] is None
        for _ in range(15):
            assert not await fired()
            await asyncio.sleep(0.1)
    await eventually(lambda: all_terminal(stack.settings.asyncpg_dsn, batch_id))
    assert len(await runs_of(stack.settings.asyncpg_dsn, batch_id)) == 1


async def test_back_from_downtime_a_scheduler_fires_once(stack, source_dsn, target_dsn):
    batch_id = await orders_batch(stack, source_dsn, target_dsn, schedule={"cron": "* * * * *"})
    dsn = stack.settings.asyncpg_dsn
    # the schedulers were down for three hours: 180 fire times were missed
    await execute(dsn, "UPDATE batches SET next_fire_time = now() - interval '3 hours' WHERE id = $1", batch_id)
    async with scheduler(stack) as running:
        first = [f for f in (await running.tick()).fires if f.batch_id == batch_id]
        again = [f for f in (await running.tick()).fires if f.batch_id == batch_id]
    assert [f.outcome for f in first] == [FireOutcome.FIRED] and again == []
    now, following = (await fetch(dsn, "SELECT now() AS now, next_fire_time FROM batches WHERE id = $1", batch_id))[0]
    assert timedelta(0) <= now - first[0].fire_time < timedelta(minutes=1)  # the latest missed time
    assert first[0].fire_time.second == 0 and following == first[0].fire_time + timedelta(minutes=1)
    await eventually(lambda: all_terminal(dsn, batch_id))
    assert len(await runs_of(dsn, batch_id)) == 1


async def test_a_fire_while_a_run_is_active_is_skipped_and_audited(stack, source_dsn, target_dsn):
    batch_id = await orders_batch(stack, source_dsn, target_dsn, rows=50, schedule={"intervalSeconds": 3600})
    dsn = stack.settings.asyncpg_dsn
    target = (await batch(stack, batch_id))["target"]["table"]
    holder = await asyncpg.connect(target_dsn)  # holds the target table: the run waits, RUNNING
    transaction = holder.transaction()
    await transaction.start()
    await holder.execute(f'LOCK TABLE "{target}" IN ACCESS EXCLUSIVE MODE')
    try:
        started = await stack.client.post(f"/integration/batch/{batch_id}/sync?wait=0", headers=stack.headers())
        run_id = started.json()["data"]["runId"]
        await eventually(lambda: fetch(dsn, "SELECT 1 FROM runs WHERE id = $1 AND status = 'RUNNING'", run_id))
        await execute(dsn, "UPDATE batches SET next_fire_time = now() WHERE id = $1", batch_id)
        async with scheduler(stack) as running:
            fires = [f for f in (await running.tick()).fires if f.batch_id == batch_id]
        assert [f.outcome for f in fires] == [FireOutcome.SKIPPED]
    finally:
        await transaction.rollback()
        await holder.close()
    assert (await wait_for_run(stack, batch_id, run_id))["status"] == "SUCCESS"
    assert len(await runs_of(dsn, batch_id)) == 1  # the skipped fire started nothing

    history = await eventually(lambda: _history_with_skip(stack, batch_id))
    assert history["runId"] == run_id and history["skippedFires"] == 1 and history["status"] == "SUCCESS"
    assert history["lastSkippedFireAt"] is not None
    replay = await asyncio.to_thread(CliRunner().invoke, audit_app,
                                     ["replay", "--settle-seconds", "0", "--batch", str(batch_id)],
                                     env={"BATCHSYNC_DATABASE_URL": stack.settings.database_url,
                                          "BATCHSYNC_KAFKA_BOOTSTRAP": stack.settings.kafka_bootstrap,
                                          "BATCHSYNC_TOPIC_PREFIX": stack.settings.topic_prefix})
    assert replay.exit_code == 0, replay.stdout + replay.stderr  # 0: every run matches, the skip included


async def _history_with_skip(stack: Stack, batch_id: int) -> dict | None:
    response = await stack.client.get(f"/integration/batch/{batch_id}/history", headers=stack.headers())
    rows = response.json()["data"]["rows"]
    return next((r for r in rows if r["skippedFires"] and r["status"] == "SUCCESS"), None)


@pytest.mark.parametrize(("schedule", "field"), [
    ({"cron": "0 25 * * *"}, "cron"),
    ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "timezone"),
    ({"intervalSeconds": 0}, "intervalSeconds"),
    ({"intervalSeconds": 60, "cron": "* * * * *"}, "schedule"),
    ({"intervalSeconds": 60, "every": 5}, "every"),
])
async def test_a_bad_schedule_is_400_naming_it(stack, source_dsn, target_dsn, schedule, field):
    src = await create_connection(stack, unique("src"), source_dsn)
    body = {"name": unique("bad"), "sourceConnectionId": src, "source": {"table": "t"},
            "targetConnectionId": src, "target": {"table": "t"}, "schedule": schedule}
    response = await stack.client.post("/integration/batch", headers=stack.headers(), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("参数错误") and field in response.json()["message"], response.text


async def test_the_list_shows_schedules_and_next_fire_times(stack, source_dsn, target_dsn):
    batch_id = await orders_batch(stack, source_dsn, target_dsn,
                                  schedule={"cron": "30 2 * * *", "timezone": "Europe/Berlin"})
    response = await stack.client.get("/integration/batch/list?pageSize=100", headers=stack.headers())
    row = next(r for r in response.json()["data"]["rows"] if r["id"] == batch_id)
    assert row["schedule"]["cron"] == "30 2 * * *" and row["schedule"]["timezone"] == "Europe/Berlin"
    fire = datetime.fromisoformat(row["nextFireTime"].replace("Z", "+00:00"))
    assert fire.minute == 30 and fire.hour in (0, 1)  # 02:30 in Berlin is 00:30 or 01:30 UTC

"""`batchsync scheduler` as real processes (docs/spec.md §9): two of them on one state store and broker fire an
interval schedule together, and the worker sees each fire's request once (no scheduler published a fire twice);
SIGTERM stops them cleanly."""

import asyncio
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.databases import migrated_database
from tests.support.processes import settings_env
from tests.support.scheduling import all_terminal, eventually, runs_of
from tests.support.sql import fetch
from tests.support.stack import create_batch, create_connection, running_stack, stack_settings

pytestmark = pytest.mark.slow

BATCHSYNC = str(Path(sys.executable).parent / "batchsync")


@pytest.fixture(scope="module")
def state(broker):
    with migrated_database("bs_schedp") as dsn:
        yield dsn


async def test_two_scheduler_processes_fire_each_time_once(state, broker, source_dsn, target_dsn, tmp_path):
    settings = stack_settings(state, broker.bootstrap, scheduler_poll_seconds=0.2)
    env = settings_env(settings)
    async with running_stack(settings) as stack:
        table = unique("orders")
        await create_orders(source_dsn, table, 10)
        await create_empty_like_orders(target_dsn, table)
        src = await create_connection(stack, unique("src"), source_dsn)
        tgt = await create_connection(stack, unique("tgt"), target_dsn)
        batch_id = await create_batch(stack, unique("sched"), src, tgt, {"table": table},
                                      {"table": table, "mode": "overwrite"}, schedule={"intervalSeconds": 2})
        logs = [tmp_path / f"scheduler{n}.log" for n in (1, 2)]
        processes = start_schedulers(env, logs)
        dsn = settings.asyncpg_dsn
        try:
            await eventually(lambda: _fired(dsn, batch_id, 3), within=30)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            codes = [await asyncio.to_thread(p.wait, 15) for p in processes]
        body = {k: v for k, v in (await stack.client.get(f"/integration/batch/{batch_id}",
                                                         headers=stack.headers())).json()["data"].items()
                if k in ("name", "sourceConnectionId", "source", "targetConnectionId", "target")}
        await stack.client.put(f"/integration/batch/{batch_id}", headers=stack.headers(), json=body)  # unscheduled
        await eventually(lambda: all_terminal(dsn, batch_id), within=30)
        runs = await runs_of(dsn, batch_id)
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    assert all("scheduler running" in text for text in texts), texts
    assert {(r["trigger"], r["requested_by"], r["status"]) for r in runs} == {("schedule", "scheduler", "SUCCESS")}
    times = [datetime.fromisoformat(r["request_id"].split(":", 2)[2].replace("Z", "+00:00")) for r in runs]
    assert all(t.timestamp() % 2 == 0 for t in times) and len(set(times)) == len(times) >= 3
    seen = await fetch(dsn, "SELECT request_id, seen_count FROM request_ledger WHERE batch_id = $1", batch_id)
    assert sorted(r["request_id"] for r in seen) == sorted(r["request_id"] for r in runs)
    assert {r["seen_count"] for r in seen} == {1}, seen  # each fire was published by one scheduler, once


def start_schedulers(env: dict[str, str], logs: list[Path]) -> list[subprocess.Popen]:
    return [subprocess.Popen([BATCHSYNC, "scheduler"], env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
            for log in logs]


async def _fired(dsn: str, batch_id: int, count: int) -> bool:
    return len(await runs_of(dsn, batch_id)) >= count

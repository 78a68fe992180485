"""Reconciliation of full runs (issue 11 item 6) on real PostgreSQL and files: equal counts in each mode, a
target trigger that drops rows, rows appended to the target by someone else during an append run, an
incremental run left unreconciled; and through the stack, `reconciled: false` with the counts in the run,
its message, the history and BatchSyncCompleted."""

import asyncio
import json
from pathlib import Path

import pytest

from schemas.api import SourceSpec
from service.sync.model import Endpoint, ProgressUpdate
from tests.contract.harness import Recorder, spec_for, sync
from tests.integration.test_engine_sync import pg, source_table, unique
from tests.support.builders import create_empty_like_orders, create_orders
from tests.support.policy import policy_for
from tests.support.signing import read_records
from tests.support.stack import SOLO, create_batch, create_connection, running_stack, stack_settings

DROP_EVERY_100TH = """
CREATE FUNCTION {t}_drop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.id % 100 = 0 THEN RETURN NULL; END IF; RETURN NEW; END $$;
CREATE TRIGGER {t}_drop BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_drop();
"""


async def target_like(dsn: str, name: str, *, rows: int = 0, trigger: bool = False) -> None:
    async with pg(dsn) as conn:
        await conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, name text, amount numeric(12,2), "
                           f"ts timestamptz, flag boolean, data jsonb, updated_at timestamptz NOT NULL)")
        if rows:
            await conn.execute(f"INSERT INTO {name} (id, updated_at) "
                               f"SELECT -g, now() FROM generate_series(1, {rows}) g")
        if trigger:
            await conn.execute(DROP_EVERY_100TH.format(t=name))


def endpoints(source_dsn: str, target_dsn: str, table: str, **spec: object) -> object:
    source = Endpoint("postgresql", url=source_dsn), SourceSpec(table=table, **spec)  # type: ignore[arg-type]
    return source, Endpoint("postgresql", url=target_dsn)


@pytest.mark.parametrize(("mode", "existing"), [("overwrite", 7), ("append", 7), ("upsert", 0)])
async def test_equal_counts_reconcile(source_dsn: str, target_dsn: str, mode: str, existing: int):
    table = await source_table(source_dsn, 1000)
    await target_like(target_dsn, table, rows=existing)
    source, target = endpoints(source_dsn, target_dsn, table)

    result = await sync(spec_for(source, target, table, mode=mode, chunk_size=300))

    expected_target = 1000 + (existing if mode == "append" else 0)
    assert (result.source_count, result.target_count, result.reconciled) == (1000, expected_target, True)


@pytest.mark.parametrize("mode", ["overwrite", "append"])
async def test_a_trigger_that_drops_rows_is_flagged(source_dsn: str, target_dsn: str, mode: str):
    table = await source_table(source_dsn, 1000)
    await target_like(target_dsn, table, trigger=True)
    source, target = endpoints(source_dsn, target_dsn, table)

    result = await sync(spec_for(source, target, table, mode=mode, chunk_size=300))

    assert (result.source_count, result.target_count, result.reconciled) == (1000, 990, False)


async def test_rows_appended_by_someone_else_during_an_append_run_are_flagged(source_dsn: str, target_dsn: str):
    table = await source_table(source_dsn, 1000)
    await target_like(target_dsn, table)
    source, target = endpoints(source_dsn, target_dsn, table)

    class Intruder(Recorder):
        async def on_chunk(self, update: ProgressUpdate) -> None:
            await super().on_chunk(update)
            if update.chunk == 1:
                async with pg(target_dsn) as conn:
                    await conn.execute(f"INSERT INTO {table} (id, updated_at) VALUES (-1, now()), (-2, now())")

    result = await sync(spec_for(source, target, table, mode="append", chunk_size=300), Intruder())

    assert result.records_written == 1000
    assert (result.source_count, result.target_count, result.reconciled) == (1000, 1002, False)


async def test_an_incremental_run_is_not_reconciled(source_dsn: str, target_dsn: str):
    table = await source_table(source_dsn, 100)
    await target_like(target_dsn, table)
    source, target = endpoints(source_dsn, target_dsn, table, cursor_column="updated_at")

    result = await sync(spec_for(source, target, table, mode="append"))

    assert result.records_written == 100
    assert (result.source_count, result.target_count, result.reconciled) == (None, None, None)


async def test_files_reconcile_on_the_rows_read_and_written(tmp_path: Path):
    (tmp_path / "orders.csv").write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(1, 251)), "utf-8")
    source = (Endpoint(type="csv", params={"path": str(tmp_path)}, policy=policy_for(tmp_path)),
              SourceSpec(table="orders"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "copy.csv").write_text("id,name\n", "utf-8")
    target = Endpoint(type="csv", params={"path": str(tmp_path / "out")}, policy=policy_for(tmp_path))

    result = await sync(spec_for(source, target, "copy", chunk_size=100))

    assert (result.source_count, result.target_count, result.reconciled) == (250, 250, True)


@pytest.fixture(scope="module")
async def stack(state_dsn, broker):
    async with running_stack(stack_settings(state_dsn, broker.bootstrap, **SOLO)) as running:
        yield running


async def test_a_difference_is_in_the_run_the_history_and_the_completed_event(stack, source_dsn, target_dsn):
    table = unique("orders")
    await create_orders(source_dsn, table, 500)
    await create_empty_like_orders(target_dsn, table)
    async with pg(target_dsn) as conn:
        await conn.execute(DROP_EVERY_100TH.format(t=table))
    batch_id = await create_batch(stack, unique("batch"), await create_connection(stack, unique("s"), source_dsn),
                                  await create_connection(stack, unique("t"), target_dsn), {"table": table},
                                  {"table": table, "mode": "overwrite"})

    response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())

    assert response.status_code == 200 and response.json()["data"]["message"] == "同步成功"  # the seed's reply
    run_id = response.json()["data"]["runId"]
    run = (await stack.client.get(f"/integration/batch/{batch_id}/runs/{run_id}", headers=stack.headers())).json()
    assert (run["data"]["sourceCount"], run["data"]["targetCount"], run["data"]["reconciled"]) == (500, 495, False)
    assert run["data"]["message"] == "同步成功（源与目标记录数不一致：源 500 行，目标 495 行）"
    for _ in range(100):
        rows = (await stack.client.get(f"/integration/batch/{batch_id}/history",
                                       headers=stack.headers())).json()["data"]["rows"]
        if rows and rows[0]["status"] == "SUCCESS":
            break
        await asyncio.sleep(0.1)
    assert (rows[0]["sourceCount"], rows[0]["targetCount"], rows[0]["reconciled"]) == (500, 495, False)
    assert "不一致" in rows[0]["message"]
    events = [json.loads(r.value) for r in await read_records(stack.settings.kafka_bootstrap,
                                                                stack.settings.topics.events, 1)]
    completed = [e for e in events if e["eventType"] == "BatchSyncCompleted" and e["runId"] == run_id]
    assert completed[0]["sourceCount"] == 500 and completed[0]["targetCount"] == 495
    assert completed[0]["reconciled"] is False

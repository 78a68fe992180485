"""Audit replay over real runs: the stack syncs real PostgreSQL tables (a success, a failure and its retry,
a cancel, a second success), then `batchsync audit replay` must match, and must name every run whose
database record was deleted, altered or invented. Run on Tansu and on noida-db (Kafka-like offsets)."""

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from typer.testing import CliRunner

from consumers.projector import Projector
from producers.publisher import Publisher
from schemas.events import BatchSyncProgress, BatchSyncStarted, Trigger
from schemas.wire import encode
from service.cli.audit import audit_app
from service.db.engine import make_engine, make_sessionmaker
from service.db.migrate import upgrade
from service.runs.snapshot import config_hash
from tests.support.brokers import noida, tansu
from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.databases import fresh_database
from tests.support.sql import fetch
from tests.support.stack import create_batch, create_connection, running_stack, stack_settings, wait_for_run

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def projector_task(settings):
    engine = make_engine(settings.database_url)
    task = asyncio.create_task(Projector(settings, make_sessionmaker(engine)).run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()


async def execute(dsn: str, sql: str, *args) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def wait_projected(dsn: str, run_ids: list[str], within: float = 30) -> None:
    async with asyncio.timeout(within):
        while True:
            rows = await fetch(dsn, "SELECT count(*) AS n FROM run_history WHERE run_id = ANY($1::uuid[]) "
                               "AND status IN ('SUCCESS','FAILED','CANCELLED')", run_ids)
            if rows[0]["n"] == len(run_ids):
                return
            await asyncio.sleep(0.1)


async def history_rows(dsn: str) -> list[tuple]:
    return [tuple(r) for r in await fetch(dsn, "SELECT * FROM run_history ORDER BY run_id")]


class Audited:
    """The scenario's settings and what the tests check against."""

    def __init__(self, settings, dsn: str, broker_kind: str) -> None:
        self.settings, self.dsn, self.broker_kind = settings, dsn, broker_kind
        self.runs: dict[str, str] = {}
        self.batches: dict[str, int] = {}
        self.middle: datetime | None = None

    async def replay(self, *args: str) -> "CliResult":
        env = {"BATCHSYNC_DATABASE_URL": self.settings.database_url,
               "BATCHSYNC_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
               "BATCHSYNC_TOPIC_PREFIX": self.settings.topic_prefix}
        result = await asyncio.to_thread(CliRunner().invoke, audit_app,
                                         ["replay", "--settle-seconds", "0", *args], env=env)
        return CliResult(result.exit_code, result.stdout, result.stderr)


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"exit {self.code}\n{self.out}\n{self.err}"


async def sync(stack, batch_id: int, path: str = "sync", sub: str = "tester") -> dict:
    response = await stack.client.post(f"/integration/batch/{batch_id}/{path}",
                                       headers=stack.headers(["*:*:*"], sub=sub))
    body = response.json()
    return body["data"] or {}


@pytest.fixture(scope="module", params=["tansu", "noida"])
def infra(request):
    """A broker of each kind and a state database of our own, so the history holds only our runs."""
    with (tansu() if request.param == "tansu" else noida()) as broker, fresh_database("bs_audit") as dsn:
        upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        yield broker, dsn


@pytest.fixture(scope="module")
async def audited(infra, source_dsn, target_dsn):
    broker, dsn = infra
    settings = stack_settings(dsn, broker.bootstrap)
    async with running_stack(settings, projector=False) as stack, projector_task(settings):
        audited = Audited(settings, dsn, broker.kind)
        await _produce_runs(stack, audited, source_dsn, target_dsn)
        await wait_projected(dsn, list(audited.runs.values()))
        yield audited


async def _produce_runs(stack, audited: Audited, source_dsn: str, target_dsn: str) -> None:
    src = await create_connection(stack, unique("src"), source_dsn)
    tgt = await create_connection(stack, unique("tgt"), target_dsn)
    plain, failing, big = unique("orders"), unique("orders"), unique("orders")
    await create_orders(source_dsn, plain, 600)
    await create_orders(source_dsn, failing, 1000)
    await create_orders(source_dsn, big, 60_000)
    for table in (plain, failing, big):
        await create_empty_like_orders(target_dsn, table)
    await execute(target_dsn, f'ALTER TABLE "{failing}" ADD CONSTRAINT below_300 CHECK (id <= 300)')
    b = audited.batches
    b["plain"] = await create_batch(stack, unique("b"), src, tgt, {"table": plain},
                                    {"table": plain, "mode": "overwrite"}, chunkSize=100)
    b["failing"] = await create_batch(stack, unique("b"), src, tgt, {"table": failing},
                                      {"table": failing, "mode": "append"}, chunkSize=100)
    b["big"] = await create_batch(stack, unique("b"), src, tgt, {"table": big},
                                  {"table": big, "mode": "overwrite"}, chunkSize=250)
    r = audited.runs
    r["first"] = (await sync(stack, b["plain"]))["runId"]
    assert await sync(stack, b["failing"]) == {}, "the first run of the failing batch must fail"
    r["failed"] = (await fetch(audited.dsn, "SELECT id::text FROM runs WHERE batch_id = $1", b["failing"]))[0]["id"]
    await execute(target_dsn, f'ALTER TABLE "{failing}" DROP CONSTRAINT below_300')
    r["retry"] = (await sync(stack, b["failing"], "retry", sub="ops"))["runId"]
    await asyncio.sleep(0.05)
    audited.middle = datetime.now(UTC)
    await asyncio.sleep(0.05)
    started = await stack.client.post(f"/integration/batch/{b['big']}/sync?wait=0", headers=stack.headers())
    r["cancelled"] = started.json()["data"]["runId"]
    await stack.client.post(f"/integration/batch/{b['big']}/cancel",
                            headers=stack.headers(["integration:batch:sync"], sub="carol"))
    assert (await wait_for_run(stack, b["big"], r["cancelled"]))["status"] == "CANCELLED"
    r["second"] = (await sync(stack, b["plain"]))["runId"]


async def test_replay_of_untouched_history_matches_and_writes_the_trail(audited, tmp_path):
    out = tmp_path / "trail.jsonl"
    result = await audited.replay("--output", str(out))
    assert result.code == 0, result
    assert "runs checked: 5" in result.out and "mismatches: 0" in result.out
    trail = {line["runId"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert set(trail) == set(audited.runs.values())
    r = audited.runs
    first = trail[r["first"]]
    assert (first["status"], first["trigger"], first["requestedBy"], first["recordsSynced"]) == (
        "SUCCESS", "http", "tester", 600)
    assert all(step["recordsWritten"] <= 600 for step in first["progress"]), "a short run may have no step"
    assert first["startedAt"] and first["finishedAt"] and first["durationMs"] >= 0
    assert trail[r["failed"]]["status"] == "FAILED" and trail[r["failed"]]["errorCode"]


async def test_trail_links_retry_records_canceller_and_identifies_config(audited, tmp_path):
    out = tmp_path / "trail.jsonl"
    assert (await audited.replay("--output", str(out))).code == 0
    trail = {line["runId"]: line for line in map(json.loads, out.read_text().splitlines())}
    r = audited.runs
    retry = trail[r["retry"]]
    assert (retry["trigger"], retry["requestedBy"], retry["resumedFromRunId"]) == ("retry", "ops", r["failed"])
    assert retry["resumedFromChunk"] == 3
    cancelled = trail[r["cancelled"]]
    assert (cancelled["status"], cancelled["cancelledBy"], cancelled["errorCode"]) == (
        "CANCELLED", "carol", "CANCELLED")
    for run_id in r.values():
        row = (await fetch(audited.dsn, "SELECT config, config_hash FROM runs WHERE id = $1::uuid", run_id))[0]
        assert trail[run_id]["configHash"] == row["config_hash"] == config_hash(json.loads(row["config"]))
    assert trail[r["retry"]]["configHash"] == trail[r["failed"]]["configHash"], "a retry runs the failed config"


async def test_altered_records_are_named(audited):
    r = audited.runs
    cases = [
        ("UPDATE runs SET records_written = records_written + 1 WHERE id = $1::uuid", r["first"],
         "runs-differs", "records_synced"),
        ("UPDATE runs SET cancel_requested_by = 'mallory' WHERE id = $1::uuid", r["cancelled"],
         "runs-differs", "cancelled_by"),
        ("UPDATE runs SET config = jsonb_set(config, '{chunkSize}', '7') WHERE id = $1::uuid", r["retry"],
         "runs-differs", "config"),
        ("UPDATE run_history SET status = 'SUCCESS', success = true WHERE run_id = $1::uuid", r["failed"],
         "history-differs", "status"),
        ("UPDATE run_history SET finished_at = finished_at + interval '1 second' WHERE run_id = $1::uuid",
         r["second"], "history-differs", "finished_at"),
    ]
    for sql, run_id, kind, field in cases:
        conn = await asyncpg.connect(audited.dsn)
        try:
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE saved_runs AS SELECT * FROM runs WHERE id = $1::uuid", run_id)
                await conn.execute("CREATE TEMP TABLE saved_history AS SELECT * FROM run_history "
                                   "WHERE run_id = $1::uuid", run_id)
                await conn.execute(sql, run_id)
            result = await audited.replay()
            assert result.code == 1, result
            lines = [line for line in result.out.splitlines() if line.startswith(kind)]
            assert any(run_id in line and field in line for line in lines), (sql, result)
            assert "mismatches: 1" in result.out, result
        finally:
            async with conn.transaction():
                await conn.execute("DELETE FROM runs WHERE id = $1::uuid", run_id)
                await conn.execute("INSERT INTO runs SELECT * FROM saved_runs")
                await conn.execute("DELETE FROM run_history WHERE run_id = $1::uuid", run_id)
                await conn.execute("INSERT INTO run_history SELECT * FROM saved_history")
                await conn.execute("DROP TABLE saved_runs, saved_history")
            await conn.close()
    assert (await audited.replay()).code == 0


async def test_deleted_runs_are_named_and_rebuild_restores_the_history(audited):
    r = audited.runs
    before = await history_rows(audited.dsn)
    events_before = await fetch(audited.dsn, "SELECT count(*) AS n FROM projected_events")
    await execute(audited.dsn, "DELETE FROM run_history WHERE run_id = $1::uuid", r["first"])
    await execute(audited.dsn, "UPDATE run_history SET records_read = 1 WHERE run_id = $1::uuid", r["retry"])
    result = await audited.replay()
    assert result.code == 1, result
    assert f"missing-in-history run={r['first']}" in result.out
    assert f"history-differs run={r['retry']}" in result.out

    rebuilt = await audited.replay("--rebuild")
    assert rebuilt.code == 0, rebuilt
    assert "projection rebuilt: 5 runs" in rebuilt.out
    assert await history_rows(audited.dsn) == before
    assert await fetch(audited.dsn, "SELECT count(*) AS n FROM projected_events") == events_before


async def test_a_run_absent_from_the_log_is_named(audited):
    fake = uuid.uuid4()
    batch_id = audited.batches["plain"]
    await execute(audited.dsn, """
        INSERT INTO runs (id, batch_id, request_id, correlation_id, trigger, requested_by, status, checkpoint_key,
                          records_written, started_at, finished_at)
        VALUES ($1, $2, $3, 'c', 'http', 'ghost', 'SUCCESS', $1, 10, now() - interval '1 minute', now())""",
                  fake, batch_id, str(fake))
    try:
        result = await audited.replay()
        assert result.code == 1, result
        assert f"missing-in-log run={fake} batch={batch_id}" in result.out
    finally:
        await execute(audited.dsn, "DELETE FROM runs WHERE id = $1", fake)


async def test_since_checks_only_runs_started_from_then_on(audited, tmp_path):
    out = tmp_path / "since.jsonl"
    result = await audited.replay("--since", audited.middle.isoformat(), "--output", str(out))
    assert result.code == 0, result
    assert "runs checked: 2" in result.out, result
    assert {json.loads(line)["runId"] for line in out.read_text().splitlines()} == {
        audited.runs["cancelled"], audited.runs["second"]}
    # tampering before the time is out of scope, after it is caught
    await execute(audited.dsn, "DELETE FROM run_history WHERE run_id = $1::uuid", audited.runs["first"])
    try:
        assert (await audited.replay("--since", audited.middle.isoformat())).code == 0
    finally:
        assert (await audited.replay("--rebuild")).code == 0

    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    nothing = await audited.replay("--since", future)
    assert nothing.code == 0 and "runs checked: 0" in nothing.out, nothing


async def test_batch_checks_only_that_batch(audited):
    result = await audited.replay("--batch", str(audited.batches["failing"]))
    assert result.code == 0 and "runs checked: 2" in result.out, result


async def test_runs_in_progress_pass_while_the_database_agrees(audited):
    """It leaves an open run in the log (no test can take an event back); the database keeps agreeing."""
    run_id, batch_id = uuid.uuid4(), audited.batches["plain"]
    started_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    common = {"batch_id": batch_id, "run_id": run_id, "correlation_id": f"c-{run_id}", "producer": "test"}
    events = [
        BatchSyncStarted(**common, trigger=Trigger.EVENT, requested_by="svc", started_at=started_at),
        BatchSyncProgress(**common, chunk=1, records_read=100, records_written=100, elapsed_ms=10,
                          records_per_second=1e4),
    ]
    await execute(audited.dsn, """
        INSERT INTO runs (id, batch_id, request_id, correlation_id, trigger, requested_by, status, checkpoint_key,
                          started_at)
        VALUES ($1, $2, $3, 'c', 'event', 'svc', 'RUNNING', $1, $4)""", run_id, batch_id, str(run_id), started_at)
    publisher = Publisher(audited.settings)
    await publisher.start()
    try:
        for event in events:
            await publisher.send(audited.settings.topics.events, encode(event), key=str(batch_id).encode())
    finally:
        await publisher.stop()
    async with asyncio.timeout(20):
        while not await fetch(audited.dsn, "SELECT 1 FROM run_history WHERE run_id = $1 AND chunks = 1", run_id):
            await asyncio.sleep(0.1)

    open_run = await audited.replay()
    assert open_run.code == 0 and "in progress 1" in open_run.out, open_run

    await execute(audited.dsn, "UPDATE runs SET status = 'SUCCESS', finished_at = now() WHERE id = $1", run_id)
    try:
        lagging = await audited.replay()
        assert lagging.code == 1 and f"runs-differs run={run_id}" in lagging.out, lagging
        assert "status: log=RUNNING" in lagging.out
        settling = await audited.replay("--settle-seconds", "3600")
        assert settling.code == 0 and "unsettled 1" in settling.out, settling
    finally:
        await execute(audited.dsn, "UPDATE runs SET status = 'RUNNING', finished_at = NULL WHERE id = $1", run_id)


async def test_projector_rereading_the_log_changes_nothing(audited):
    before = await history_rows(audited.dsn)
    group = f"{audited.settings.topic_prefix}.projector"
    stored = ("SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND next_offset > 0 "
              "ORDER BY partition")
    offsets = await fetch(audited.dsn, stored, group)
    await execute(audited.dsn, "DELETE FROM consumer_offsets WHERE group_id = $1", group)
    async with projector_task(audited.settings):
        async with asyncio.timeout(40):
            while await fetch(audited.dsn, stored, group) != offsets:
                await asyncio.sleep(0.1)
    assert await history_rows(audited.dsn) == before
    assert (await audited.replay()).code == 0

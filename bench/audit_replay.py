"""`batchsync audit replay` over a large synthetic log: events/s and the replay process's peak RSS.

    .venv/bin/python -m bench.audit_replay                       # 1,000,000 events, 100,000 runs
    .venv/bin/python -m bench.audit_replay --runs 10000          # a tenth, to see how memory scales

Starts a Tansu broker and a scratch state database, produces valid lifecycle events (per run: Started,
`--steps` Progress, Completed; some runs fail or are cancelled) with confluent-kafka, writes the
matching `runs` rows, then runs the real CLI in a child process twice: `--rebuild` (which writes the
projection) and a plain replay (which verifies it). Both must exit 0; memory should follow the number
of runs (one small summary each), not the number of events.
"""

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import psutil
from confluent_kafka import Producer

from producers.topics import ensure_topics
from schemas.events import BatchSyncCompleted, BatchSyncProgress, BatchSyncStarted, ErrorCode, Trigger
from schemas.status import RunStatus
from schemas.wire import encode
from service.config import Settings
from service.db.migrate import upgrade
from service.runs.snapshot import config_hash
from tests.support.brokers import tansu
from tests.support.databases import fresh_database
from tests.support.signing import signed_headers

NS = uuid.UUID("0b9d2e4c-7d8f-4a51-9e3a-2c6b1f0d5e77")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BATCHES = 1000
CLI = "from service.cli.audit import audit_app; audit_app()"


def config_for(batch_id: int) -> dict:
    return {"batchId": batch_id, "configVersion": 1, "sourceConnectionId": 1, "source": {"table": f"s{batch_id}"},
            "targetConnectionId": 1, "target": {"table": f"t{batch_id}", "mode": "append"}, "mapping": None,
            "chunkSize": 1000}


def synthetic_run(i: int, steps: int) -> tuple[list, tuple]:
    """One run's events and its `runs` row, consistent with each other."""
    batch_id, run_id = 1 + i % BATCHES, uuid.uuid5(NS, f"bench-{i}")
    common = {"batch_id": batch_id, "run_id": run_id, "correlation_id": f"c-{i}", "producer": "bench"}
    started_at = T0 + timedelta(milliseconds=10 * i)
    chash = config_hash(config_for(batch_id))
    events: list = [BatchSyncStarted(**common, trigger=Trigger.HTTP, requested_by=f"user{i % 7}",
                                     started_at=started_at, config_hash=chash, occurred_at=started_at)]
    for k in range(1, steps + 1):
        events.append(BatchSyncProgress(**common, chunk=k, records_read=1000 * k, records_written=1000 * k,
                                        elapsed_ms=5 * k, records_per_second=2e5,
                                        occurred_at=started_at + timedelta(milliseconds=5 * k)))
    duration = 5 * steps + 3
    finished = started_at + timedelta(milliseconds=duration)
    code, cancelled_by = (ErrorCode.CANCELLED, "carol") if i % 50 == 0 else (
        (ErrorCode.TARGET_ERROR, None) if i % 10 == 0 else (None, None))
    message = "同步成功" if code is None else "同步失败：bench"
    events.append(BatchSyncCompleted(**common, success=code is None, message=message, sync_time=finished,
                                     records_synced=1000 * steps, duration_ms=duration, error_code=code,
                                     cancelled_by=cancelled_by, occurred_at=finished))
    status = RunStatus.SUCCESS if code is None else (
        RunStatus.CANCELLED if code is ErrorCode.CANCELLED else RunStatus.FAILED)
    row = (run_id, batch_id, f"bench-{i}", f"c-{i}", "http", f"user{i % 7}", status, run_id,
           json.dumps(config_for(batch_id)), chash, 1000 * steps, 1000 * steps, steps, started_at, finished,
           message, code.value if code else None, cancelled_by)
    return events, row


RUN_COLUMNS = ["id", "batch_id", "request_id", "correlation_id", "trigger", "requested_by", "status",
               "checkpoint_key", "config", "config_hash", "records_read", "records_written", "chunks", "started_at",
               "finished_at", "message", "error_code", "cancel_requested_by"]


async def seed_state(dsn: str, rows: list[tuple]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO connections (id, name, type, url) VALUES (1, 'bench', 'postgresql', 'x')")
        await conn.execute("INSERT INTO batches (id, name, source_connection_id, source, target_connection_id, target)"
                           " SELECT g, 'b' || g, 1, '{}', 1, '{}' FROM generate_series(1, $1) g", BATCHES)
        await conn.execute("SET session_replication_role = replica")  # bulk load: skip FK checks
        await conn.copy_records_to_table("runs", records=rows, columns=RUN_COLUMNS)
    finally:
        await conn.close()


def produce(settings: Settings, runs: int, steps: int) -> tuple[int, list[tuple]]:
    """Events signed as the service signs them, so the audit verifies every one."""
    topic = settings.topics.events
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                         "queue.buffering.max.messages": 500000, "acks": "all"})
    count, rows = 0, []
    for i in range(runs):
        events, row = synthetic_run(i, steps)
        rows.append(row)
        for event in events:
            while True:
                try:
                    key, value = str(event.batch_id).encode(), encode(event)
                    producer.produce(topic, key=key, value=value,
                                     headers=signed_headers(settings, topic, key, value))
                    break
                except BufferError:
                    producer.poll(0.1)
            count += 1
        producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("not every event was delivered")
    return count, rows


def timed_cli(args: list[str], env: dict[str, str]) -> tuple[float, int, int, str]:
    """Wall time, exit code and peak RSS (bytes, polled every 20 ms) of one `audit replay` child."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CLI, "replay", *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    process, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    out = child.stdout.read() if child.stdout else ""
    return time.perf_counter() - start, child.returncode, peak, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=8, help="progress events per run (events = runs × (steps+2))")
    args = parser.parse_args()
    with tansu() as broker, fresh_database("bs_bench_audit") as dsn:
        upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        secret = os.environ.get("BATCHSYNC_SECRET_KEY") or secrets.token_urlsafe(32)
        settings = Settings(kafka_bootstrap=broker.bootstrap, database_url=dsn, topic_prefix="bench.audit",
                            secret_key=secret)
        asyncio.run(ensure_topics(settings))
        t = time.perf_counter()
        events, rows = produce(settings, args.runs, args.steps)
        print(f"produced {events:,} events of {args.runs:,} runs in {time.perf_counter() - t:.1f}s")
        asyncio.run(seed_state(dsn, rows))
        del rows
        env = {**os.environ, "BATCHSYNC_DATABASE_URL": dsn, "BATCHSYNC_KAFKA_BOOTSTRAP": broker.bootstrap,
               "BATCHSYNC_TOPIC_PREFIX": settings.topic_prefix, "BATCHSYNC_SECRET_KEY": secret}
        for label, extra in (("replay --rebuild", ["--rebuild"]), ("replay (verify)", [])):
            seconds, code, peak, out = timed_cli([*extra, "--settle-seconds", "0"], env)
            summary = " | ".join(line for line in out.splitlines() if not line.startswith(("missing", "history",
                                                                                             "runs-")))
            print(f"{label}: exit {code}, {seconds:.1f}s, {events / seconds:,.0f} events/s, "
                  f"peak RSS {peak / 2**20:.0f} MiB — {summary}")
            if code != 0:
                print(out[:2000])


if __name__ == "__main__":
    main()

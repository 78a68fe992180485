"""`batchsync up --demo` as a real process in a fresh directory: it serves, syncs the demo, stops cleanly on
SIGINT and SIGTERM with no child left behind, keeps its broker log, database and JWT secret across
restarts, and its children die with it when it is SIGKILLed."""

import asyncio
import signal
import uuid
from pathlib import Path

import asyncpg
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from producers.clients import stop_consumer
from tests.support.brokers import free_port
from tests.support.embedded_up import bootstrap, kill_all, pg_url, run_cli, start_up, stop_up, wait_healthy

pytestmark = pytest.mark.slow

PROBE_TOPIC = "embedded-probe"


async def _write_probes(cwd: Path, marker: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(cwd), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(PROBE_TOPIC, marker.encode(), key=b"probe")
    finally:
        await producer.stop()
    conn = await asyncpg.connect(pg_url(cwd))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS probe (marker text)")
        await conn.execute("INSERT INTO probe VALUES ($1)", marker)
    finally:
        await conn.close()


async def _read_probes(cwd: Path) -> tuple[list[str], list[str]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(cwd), enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    values: list[str] = []
    try:
        await consumer.topics()
        tps = [TopicPartition(PROBE_TOPIC, p) for p in consumer.partitions_for_topic(PROBE_TOPIC) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=500)
            values += [m.value.decode() for records in batch.values() for m in records]
    finally:
        await stop_consumer(consumer)
    conn = await asyncpg.connect(pg_url(cwd))
    try:
        rows = [r["marker"] for r in await conn.fetch("SELECT marker FROM probe")]
    finally:
        await conn.close()
    return values, rows


async def _demo_target_rows(cwd: Path) -> int:
    conn = await asyncpg.connect(pg_url(cwd, "demo_target"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM orders"))
    finally:
        await conn.close()


async def _catalog_counts(cwd: Path) -> tuple[int, int, int]:
    """Connections, batches and demo source rows: a second `up --demo` must not add any."""
    conn = await asyncpg.connect(pg_url(cwd))
    source = await asyncpg.connect(pg_url(cwd, "demo_source"))
    try:
        return (int(await conn.fetchval("SELECT count(*) FROM connections")),
                int(await conn.fetchval("SELECT count(*) FROM batches")),
                int(await source.fetchval("SELECT count(*) FROM orders")))
    finally:
        await conn.close()
        await source.close()


def test_up_serves_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    port = free_port()
    marker = uuid.uuid4().hex
    process = start_up(tmp_path, port, "--demo")
    children: list[psutil.Process] = []
    try:
        children = wait_healthy(process, port, tmp_path)
        assert {"postgres", "noida-db"} <= {c.name() for c in children}
        secret_file = tmp_path / ".batchsync" / "jwt_secret"
        assert secret_file.stat().st_mode & 0o777 == 0o600
        secret = secret_file.read_text()
        output = (tmp_path / "up.log").read_text()
        assert f"curl -X POST http://127.0.0.1:{port}/integration/batch/1/sync -H \"Authorization: Bearer " in output

        synced = run_cli(tmp_path, port, "sync", "1", "--follow")
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert "SUCCESS: 100000 records" in synced.stdout
        assert asyncio.run(_demo_target_rows(tmp_path)) == 100_000
        asyncio.run(_write_probes(tmp_path, marker))
        stop_up(process, signal.SIGINT, children)

        process = start_up(tmp_path, port, "--demo")
        children = wait_healthy(process, port, tmp_path)
        values, rows = asyncio.run(_read_probes(tmp_path))
        assert marker in values and rows == [marker]
        assert secret_file.read_text() == secret
        assert asyncio.run(_catalog_counts(tmp_path)) == (2, 1, 100_000)
        stop_up(process, signal.SIGTERM, children)

        process = start_up(tmp_path, port)
        children = wait_healthy(process, port, tmp_path)
        stop_up(process, signal.SIGKILL, children)
    finally:
        kill_all(process, children)

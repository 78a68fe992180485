"""`batchsync up --demo` as a real process in a fresh directory: it serves, syncs the demo, stops cleanly on
SIGINT and SIGTERM with no child left behind, keeps its broker log, database and JWT secret across
restarts, and its children die with it when it is SIGKILLed."""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.support.brokers import free_port

pytestmark = pytest.mark.slow

CLI = "from service.cli import app; app()"
PROBE_TOPIC = "embedded-probe"


def _env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSYNC_")}
    env.update(BATCHSYNC_HTTP_PORT=str(port), BATCHSYNC_LOG_LEVEL="WARNING")
    return env


def _start(cwd: Path, port: int, *args: str) -> subprocess.Popen:
    log = open(cwd / "up.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-c", CLI, "up", *args], cwd=cwd, env=_env(port),
                            stdout=log, stderr=subprocess.STDOUT)


def _wait_healthy(process: subprocess.Popen, port: int, cwd: Path, timeout: float = 90) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, (cwd / "up.log").read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return psutil.Process(process.pid).children(recursive=True)
        time.sleep(0.2)
    raise AssertionError("no /healthz in time:\n" + (cwd / "up.log").read_text()[-3000:])


def _assert_gone(children: list[psutil.Process], timeout: float = 20) -> None:
    _, alive = psutil.wait_procs(children, timeout=timeout)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"orphans: {[(p.pid, p.name()) for p in alive]}"


def _stop(process: subprocess.Popen, sig: int, children: list[psutil.Process]) -> None:
    process.send_signal(sig)
    assert process.wait(60) == 0 or sig == signal.SIGKILL
    _assert_gone(children)


def _kill_all(process: subprocess.Popen, children: list[psutil.Process]) -> None:
    for proc in [*children]:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    with contextlib.suppress(OSError):
        process.kill()
    process.wait()


def _pg_url(cwd: Path) -> str:
    return f"postgresql://postgres@127.0.0.1:{(cwd / '.batchsync' / 'pg.port').read_text().strip()}/batchsync"


def _bootstrap(cwd: Path) -> str:
    return json.loads((cwd / ".batchsync" / "endpoints.json").read_text())["kafka_bootstrap"]


async def _write_probes(cwd: Path, marker: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=_bootstrap(cwd), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(PROBE_TOPIC, marker.encode(), key=b"probe")
    finally:
        await producer.stop()
    conn = await asyncpg.connect(_pg_url(cwd))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS probe (marker text)")
        await conn.execute("INSERT INTO probe VALUES ($1)", marker)
    finally:
        await conn.close()


async def _read_probes(cwd: Path) -> tuple[list[str], list[str]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=_bootstrap(cwd), enable_auto_commit=False, fetch_max_wait_ms=50)
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
        await consumer.stop()
    conn = await asyncpg.connect(_pg_url(cwd))
    try:
        rows = [r["marker"] for r in await conn.fetch("SELECT marker FROM probe")]
    finally:
        await conn.close()
    return values, rows


async def _demo_target_rows(cwd: Path) -> int:
    conn = await asyncpg.connect(_pg_url(cwd).rsplit("/", 1)[0] + "/demo_target")
    try:
        return int(await conn.fetchval("SELECT count(*) FROM orders"))
    finally:
        await conn.close()


async def _catalog_counts(cwd: Path) -> tuple[int, int, int]:
    """Connections, batches and demo source rows: a second `up --demo` must not add any."""
    conn = await asyncpg.connect(_pg_url(cwd))
    source = await asyncpg.connect(_pg_url(cwd).rsplit("/", 1)[0] + "/demo_source")
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
    process = _start(tmp_path, port, "--demo")
    children: list[psutil.Process] = []
    try:
        children = _wait_healthy(process, port, tmp_path)
        assert {"postgres", "noida-db"} <= {c.name() for c in children}
        secret_file = tmp_path / ".batchsync" / "jwt_secret"
        assert secret_file.stat().st_mode & 0o777 == 0o600
        secret = secret_file.read_text()
        output = (tmp_path / "up.log").read_text()
        assert f"curl -X POST http://127.0.0.1:{port}/integration/batch/1/sync -H \"Authorization: Bearer " in output

        synced = subprocess.run([sys.executable, "-c", CLI, "sync", "1", "--follow"], cwd=tmp_path,
                                env=_env(port), capture_output=True, text=True, timeout=120)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert "SUCCESS: 100000 records" in synced.stdout
        assert asyncio.run(_demo_target_rows(tmp_path)) == 100_000
        asyncio.run(_write_probes(tmp_path, marker))
        _stop(process, signal.SIGINT, children)

        process = _start(tmp_path, port, "--demo")
        children = _wait_healthy(process, port, tmp_path)
        values, rows = asyncio.run(_read_probes(tmp_path))
        assert marker in values and rows == [marker]
        assert secret_file.read_text() == secret
        assert asyncio.run(_catalog_counts(tmp_path)) == (2, 1, 100_000)
        _stop(process, signal.SIGTERM, children)

        process = _start(tmp_path, port)
        children = _wait_healthy(process, port, tmp_path)
        _stop(process, signal.SIGKILL, children)
    finally:
        _kill_all(process, children)

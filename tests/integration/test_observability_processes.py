"""The observability of real processes: `batchsync api`, `worker` and `projector` as child processes
configured only by environment variables, scraped and read after real syncs.

- metrics: the API's open /metrics and the worker's and projector's BATCHSYNC_METRICS_PORT servers move
  after a sync (runs, records, chunks, lag, HTTP requests); a metrics port in use is a WARNING and the
  next free port, so two parts on one machine with the same setting each get their own;
- logs: JSON lines with runId, batchId and correlationId on the worker's lines about a run, an access line
  per request without the token or the query string, a failed run at WARNING with its errorCode;
- traces: the caller's traceparent reaches the request, the events and the reply on the bus, written by
  the worker process.
"""

import asyncio
import contextlib
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from producers.clients import stop_consumer
from service.auth import mint_token
from service.observability.metrics import PORTS_TRIED
from tests.support.brokers import _die_with_parent, free_port
from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.log_lines import logged
from tests.support.processes import settings_env
from tests.support.stack import stack_settings

pytestmark = pytest.mark.slow

CLI = "from service.cli import app; app()"


@dataclass
class Part:
    name: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(part: str, env: dict[str, str], tmp_path: Path) -> Part:
    log = tmp_path / f"{part}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-c", CLI, part], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   preexec_fn=_die_with_parent)
    return Part(part, process, log)


@contextlib.contextmanager
def parts(env: dict[str, str], tmp_path: Path, *names: str) -> Iterator[dict[str, Part]]:
    started = {name: start(name, env, tmp_path) for name in names}
    try:
        yield started
    finally:
        for part in started.values():
            part.process.terminate()
        for part in started.values():
            try:
                part.process.wait(20)
            except subprocess.TimeoutExpired:
                part.process.kill()


def wait_until(check, what: str, part: Part, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert part.process.poll() is None, f"{part.name} exited:\n{part.output()[-3000:]}"
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what} from {part.name} in time:\n{part.output()[-3000:]}")


def metrics_port(part: Part) -> int:
    def announced() -> int | None:
        for line in logged(part.output(), logger="service.observability.metrics"):
            if match := re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line["message"]):
                return int(match.group(1))
        return None

    return int(wait_until(announced, "metrics port", part))


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the text exposition at `url`, read by prometheus-client's own parser."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(httpx.get(url, timeout=5).text)
            for sample in family.samples}


def value(samples, name: str, **labels: str) -> float:
    """The sum over the series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def records_with(bootstrap: str, topic: str, needle: bytes, until: bytes, timeout: float = 20) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                fetch_max_wait_ms=20)
    await consumer.start()
    found: list = []
    try:
        async with asyncio.timeout(timeout):
            while not any(until in r.value for r in found):
                batch = await consumer.getmany(timeout_ms=500)
                found += [r for rs in batch.values() for r in rs if needle in r.value]
    finally:
        await stop_consumer(consumer)
    return found


def traceparent_of(record) -> str | None:
    return next((v.decode() for k, v in record.headers if k == "traceparent"), None)


async def test_metrics_logs_and_traces_of_real_processes(tmp_path, state_dsn, broker, source_dsn, target_dsn) -> None:
    settings = stack_settings(state_dsn, broker.bootstrap, http_port=free_port())
    taken = socket.socket()  # the configured metrics port is in use: both parts move on, with a WARNING
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    wanted = taken.getsockname()[1]
    env = settings_env(settings) | {"BATCHSYNC_LOG_FORMAT": "json", "BATCHSYNC_METRICS_PORT": str(wanted),
                                    "BATCHSYNC_LOG_LEVEL": "INFO"}
    api_url = f"http://127.0.0.1:{settings.http_port}"
    token = mint_token(settings, "operator", ["*:*:*"])
    auth = {"Authorization": f"Bearer {token}"}
    table, missing = unique("orders"), unique("missing")
    await create_orders(source_dsn, table, 2500)
    await create_empty_like_orders(target_dsn, table)
    await create_empty_like_orders(source_dsn, missing)
    await create_empty_like_orders(target_dsn, missing)

    with taken, parts(env, tmp_path, "api", "worker", "projector") as running:
        api, worker, projector = running["api"], running["worker"], running["projector"]
        worker_port, projector_port = metrics_port(worker), metrics_port(projector)
        assert len({wanted, worker_port, projector_port}) == 3
        assert worker_port - wanted < PORTS_TRIED and projector_port - wanted < PORTS_TRIED
        for part in (worker, projector):
            assert logged(part.output(), level="WARNING", logger="service.observability.metrics")

        async with httpx.AsyncClient(base_url=api_url, headers=auth, timeout=60) as client:
            await asyncio.to_thread(wait_until, lambda: _ready(api_url), "readiness", api)
            ids = []
            for name in ("src", "tgt"):
                dsn = source_dsn if name == "src" else target_dsn
                created = await client.post("/integration/connection",
                                            json={"name": unique(name), "type": "postgresql", "url": dsn})
                ids.append(created.json()["data"]["id"])
            good = (await client.post("/integration/batch", json={
                "name": unique("good"), "sourceConnectionId": ids[0], "source": {"table": table},
                "targetConnectionId": ids[1], "target": {"table": table, "mode": "append"}, "chunkSize": 1000,
            })).json()["data"]["id"]
            bad = (await client.post("/integration/batch", json={
                "name": unique("bad"), "sourceConnectionId": ids[0], "source": {"table": missing},
                "targetConnectionId": ids[1], "target": {"table": missing, "mode": "append"},
            })).json()["data"]["id"]
            await asyncpg_drop(source_dsn, missing)  # the source table goes away: the run fails
            before = scrape(f"http://127.0.0.1:{worker_port}/metrics")

            trace_id = secrets.token_hex(16)
            synced = await client.post(f"/integration/batch/{good}/sync?wait=30",
                                       headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
            assert synced.status_code == 200 and synced.json()["data"]["success"], synced.text
            run_id = synced.json()["data"]["runId"]
            failed = await client.post(f"/integration/batch/{bad}/sync?wait=30")
            assert failed.status_code == 400, failed.text  # the seed's answer to a failed run
            failed_run = (await client.get(f"/integration/batch/{bad}")).json()["data"]["lastRunId"]
            code = (await client.get(f"/integration/batch/{bad}/runs/{failed_run}")).json()["data"]["errorCode"]
            await client.get("/integration/batch/list", params={"pageNum": 1, "apiKey": "QUERY-SECRET-991"})

        after = scrape(f"http://127.0.0.1:{worker_port}/metrics")
        trigger = {"trigger": "http"}
        assert value(after, "batchsync_runs_total", status="SUCCESS", **trigger) - \
            value(before, "batchsync_runs_total", status="SUCCESS", **trigger) == 1
        assert value(after, "batchsync_runs_total", status="FAILED") - \
            value(before, "batchsync_runs_total", status="FAILED") == 1
        assert value(after, "batchsync_run_failures_total", error_code=code) >= 1
        assert value(after, "batchsync_records_synced_total") - value(before, "batchsync_records_synced_total") \
            == 2500
        assert value(after, "batchsync_chunk_duration_seconds_count") - \
            value(before, "batchsync_chunk_duration_seconds_count") == 3
        assert value(after, "batchsync_run_duration_seconds_count", status="SUCCESS") >= 1
        assert value(after, "batchsync_active_runs") == 0
        assert ("batchsync_outbox_backlog", frozenset()) in after
        worker_group = f"{settings.topic_prefix}.worker"
        lag_of = {worker_port: ("group", worker_group), projector_port: ("topic", settings.topics.events)}
        for port, label in lag_of.items():  # sampled at most once a second, from a fetch's high-water mark
            part = worker if port == worker_port else projector
            wait_until(lambda port=port, label=label: any(
                n == "batchsync_consumer_lag" and label in ls for n, ls in scrape(f"http://127.0.0.1:{port}/metrics")),
                "consumer lag", part, timeout=10)
        served = scrape(f"{api_url}/metrics")  # open: no token
        sync_route = {"method": "POST", "route": "/integration/batch/{id}/sync"}
        assert value(served, "batchsync_http_requests_total", status="200", **sync_route) == 1
        assert value(served, "batchsync_http_requests_total", status="400", **sync_route) == 1

        requests = await records_with(broker.bootstrap, settings.topics.requested, f'"batchId":{good},'.encode(), b"")
        events = await records_with(broker.bootstrap, settings.topics.events, run_id.encode(), b"BatchSyncCompleted")
        replies = await records_with(broker.bootstrap, settings.topics.replies, run_id.encode(), b"")

    for record in [*requests[-1:], *events, *replies]:  # the events and the reply come from the worker process
        assert (traceparent_of(record) or "").split("-")[1:2] == [trace_id], record.headers

    worker_lines = logged(worker.output(), runId=run_id)
    assert worker_lines and all(line["batchId"] == good and line["correlationId"] for line in worker_lines)
    (failure,) = logged(worker.output(), level="WARNING", runId=failed_run, errorCode=code)
    assert failure["batchId"] == bad
    access = logged(api.output(), logger="batchsync.access")
    assert {(line["method"], line["path"], line["status"]) for line in access} >= {
        ("POST", f"/integration/batch/{good}/sync", 200), ("GET", "/integration/batch/list", 200)}
    assert all(line["user"] == "operator" for line in access if line["path"].startswith("/integration"))
    for part in (api, worker, projector):
        assert token not in part.output() and "QUERY-SECRET-991" not in part.output()


def _ready(api_url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{api_url}/readyz", timeout=3).status_code == 200
    return False


async def asyncpg_drop(dsn: str, table: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP TABLE "{table}"')
    finally:
        await conn.close()

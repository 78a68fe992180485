"""Split runs across worker processes (docs/spec.md §10, docs/scale.md): what slices buy when the source waits,
and what they cost when the database is the limit.

    .venv/bin/python -m bench.split                # every part, full size (about 15 minutes on 2 cores)
    .venv/bin/python -m bench.split --quick        # 100,000 rows through the link, 1,000,000 PG→PG (~6 min)
    .venv/bin/python -m bench.split --only link    # or pg, plan, publish (repeatable)

The real pieces: a Tansu broker, the API and N worker processes (BATCHSYNC_WORKER_CONCURRENCY stated per
line), the state store in a scratch database; the source and target tables in scratch databases (PostgreSQL
127.0.0.1:5432) and a scratch MariaDB table (127.0.0.1:3306). Before each line the workers of the line are
started and the bench waits until the broker reports their consumer group Stable with exactly that many
members; each line is one `POST /integration/batch/{id}/sync`, timed until the state store has the run
terminal, and checked (SUCCESS, recordsWritten, reconciled, the target's count and distinct ids).

**link**: a source whose cost is waiting, on the source side (the HTTP source cannot be split: it has no
`restrict`; no target-side wait is used). A MariaDB table read through a TCP proxy in this process that
models a WAN link (the remote MySQL of docs/scale.md): each connection gets the server's bytes at no more than
--link-kib KiB/s and every request waits --rtt-ms before it reaches the server. Planning, counts and estimates
send few bytes and are barely slowed; reading rows is. The same split batch (maxRowsPerSlice = rows / 16,
append into PostgreSQL) runs on 1, 2 and 4 worker processes of concurrency 1 (one slice, one connection each)
with the default lease (15 s), on 2 and 4 with a lease of 3 s (a slice not claimed within a lease of planning
goes to any worker with a free slot, whose orphan scan runs every lease / 2: the bench's slices take about 4 s,
a default 500,000-row slice over such a link takes minutes, so the 3 s lease stands in for a lease that is short
next to a slice, as the default is in production), then on one worker of concurrency 4, then unsplit on one
worker. Speedups are against the
1-worker split run measured in the same run; the workers' CPU seconds show the time was spent waiting. Each
line also lists the slices per worker (* the coordinator, (+n) slices it took over by its orphan scan) and the
state store's row writes during the line (its statistics: inserts, updates and deletes per table).

**pg**: PostgreSQL → PostgreSQL on one server, --rows rows (5,000,000), where the database and the 2 cores are
the limit. Append and overwrite, unsplit and split (the default maxRowsPerSlice, 500,000), on one worker and on
two (concurrency 1 each). Others' load on a shared machine moves a 20-second line by 2×, so each line runs right
after a psql binary COPY pipe of the same rows (the database's own speed at that moment): a line's ratio to its
pipe, and the unsplit 1-worker run's ratio to its own, give the comparison ("× unsplit"). For a split overwrite,
"after the last slice" is the publish (one INSERT … SELECT of every stage, one transaction), the
reconciliation's counts and the completion.

**publish**: a split overwrite of the pg part's rows staged by the engine in this process (4 slices), published
once under a 1 s I/O timeout (it fails: the publish is one operation under BATCHSYNC_IO_TIMEOUT_SECONDS, default
120 s, so 1 s on these rows stands for 120 s on some tens of millions) and once without one, timed.

**plan**: the planner in this process on the pg part's source table: exact counts (the default below
5,000,000 rows) and the database's estimates (forced) cut into about 2,000 slices, with the calls and
seconds each took; and how many locks an overwrite's publish holds per slice (its stages' INSERT … SELECT and
DROP in one transaction), against the lock table of this PostgreSQL server.
"""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncmy
import asyncpg
import httpx
from pydantic import SecretStr

from bench.http_stack import api_up
from bench.mariadb_to_pg import FILL as MYSQL_FILL
from bench.mariadb_to_pg import MYSQL, TARGET_DDL
from bench.mariadb_to_pg import SOURCE_DDL as MYSQL_DDL
from bench.pg_to_pg import FILL as PG_FILL
from bench.pg_to_pg import TABLE_DDL, time_copy_pipe
from service.auth import mint_token
from service.config import Settings
from service.db.migrate import upgrade
from service.embedded import die_with_parent
from tests.support.brokers import free_port, tansu
from tests.support.databases import fresh_database
from tests.support.processes import settings_env

API_MAIN = ("import asyncio; from service.bootstrap import run_api; from service.config import Settings; "
            "asyncio.run(run_api(Settings()))")
WORKER_MAIN = ("import asyncio; from service.bootstrap import run_worker; from service.config import Settings; "
               "from service.observability.logs import configure; settings = Settings(); configure(settings); "
               "asyncio.run(run_worker(settings))")
"""A worker as tests/support/processes.py starts one, its INFO lines (slices it took over) in its log."""
SECRET = "bench-secret-0123456789abcdef-0123"
TERMINAL = ("SUCCESS", "FAILED", "CANCELLED")


def _child() -> None:
    die_with_parent(signal.SIGTERM)  # no API or worker outlives the bench


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f}"


# --- the link: a TCP proxy with a per-connection bandwidth cap and a per-request delay ---


class Link:
    """A TCP proxy on 127.0.0.1 in its own thread and event loop. Bytes from the server reach the client at
    no more than `rate` bytes/s per connection (a token bucket over 16 KiB reads); bytes from the client wait
    `rtt` seconds before they are forwarded, so each request costs a round trip. The bench's own process
    carries the bytes: a few MiB/s, a few percent of one core."""

    def __init__(self, upstream_port: int, rate: float, rtt: float) -> None:
        self.upstream_port, self.rate, self.rtt = upstream_port, rate, rtt
        self.port = 0
        self.carried = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="link", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def __enter__(self) -> "Link":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connection, "127.0.0.1", 0), self._loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *_: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        pumps = [asyncio.ensure_future(self._requests(client_r, server_w)),
                 asyncio.ensure_future(self._replies(server_r, client_w))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the link closes
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in (client_w, server_w):
                writer.close()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if self.rtt:
                await asyncio.sleep(self.rtt)
            writer.write(data)
            await writer.drain()

    async def _replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clock = asyncio.get_running_loop()
        free_at = clock.time()
        while data := await reader.read(16384):
            free_at = max(free_at, clock.time()) + len(data) / self.rate
            if (wait := free_at - clock.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
            self.carried += len(data)


# --- the service: broker, API process, worker processes ---


@dataclass
class Service:
    settings: Settings
    base_url: str
    headers: dict[str, str]
    logs: Path
    state_dsn: str
    broker: str
    generation: list[int] = field(default_factory=lambda: [0])

    @property
    def group(self) -> str:
        return f"{self.settings.topic_prefix}.worker"


def _spawn(code: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=out,
                                preexec_fn=_child)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def service(state_dsn: str, logs: Path) -> Iterator[Service]:
    """A Tansu broker and the API process on the state database `state_dsn` (migrated here)."""
    upgrade(state_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    with tansu() as broker:
        port = free_port()
        settings = Settings(database_url=state_dsn, kafka_bootstrap=broker.bootstrap, jwt_secret=SecretStr(SECRET),
                            secret_key=SecretStr(SECRET), file_roots=tempfile.gettempdir(), http_port=port,
                            topic_prefix=f"benchsplit{os.getpid()}.batch.sync", log_format="text",
                            reply_fetch_max_wait_ms=10, request_fetch_max_wait_ms=10)
        api = _spawn(API_MAIN, settings_env(settings), logs / "api.log")
        try:
            base_url = f"http://127.0.0.1:{port}"
            if not api_up(base_url, api, within=60):
                raise RuntimeError(f"the API did not come up; see {logs / 'api.log'}")
            token = mint_token(settings, "bench", ["*:*:*"])
            yield Service(settings, base_url, {"Authorization": f"Bearer {token}"}, logs, state_dsn,
                          broker.bootstrap)
        finally:
            _stop([api])


async def _group(bootstrap: str, group: str) -> tuple[str, set[str]]:
    """The worker group's state and member ids, as the broker tells them."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        response = (await admin.describe_consumer_groups([group]))[0]
        _, _, state, _, _, members = response.groups[0]
        return str(state), {str(member[0]) for member in members}
    finally:
        await admin.close()


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


@dataclass
class Workers:
    ids: list[str]
    processes: list[subprocess.Popen[bytes]]
    logs: Path

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(p.pid) for p in self.processes)

    def took_over(self, run_id: str) -> dict[str, int]:
        """Slices of `run_id` each worker took over by its orphan scan (not from its own partitions)."""
        return {wid: (self.logs / f"{wid}.log").read_text(errors="replace").count(f"of run {run_id} of batch")
                for wid in self.ids}


@contextlib.contextmanager
def workers(svc: Service, count: int, concurrency: int, lease: float | None = None) -> Iterator[Workers]:
    """`count` worker processes of `concurrency` (and BATCHSYNC_LEASE_SECONDS `lease`, default 15), yielded once
    the broker reports their group Stable with exactly `count` members (the partitions of P.requested spread
    over them)."""
    svc.generation[0] += 1
    # Tansu keeps a stopped worker's member in the group (Stable) until a new member's join makes it time out
    # (session_timeout_ms): the group is ready when it is Stable with exactly `count` members, none of them one
    # that was there before these workers started.
    stale = asyncio.run(_group(svc.broker, svc.group))[1]
    tuning: dict[str, Any] = {"worker_concurrency": concurrency}
    if lease is not None:
        tuning["lease_seconds"] = lease
    env = settings_env(svc.settings.model_copy(update=tuning))
    ids = [f"g{svc.generation[0]}-w{i + 1}" for i in range(count)]
    processes = [_spawn(WORKER_MAIN, env | {"BATCHSYNC_WORKER_ID": wid}, svc.logs / f"{wid}.log") for wid in ids]
    try:
        deadline = time.monotonic() + 90
        state, members = "", set[str]()
        while True:
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a worker exited; see the logs in {svc.logs}")
            with contextlib.suppress(Exception):
                state, members = asyncio.run(_group(svc.broker, svc.group))
                if state == "Stable" and len(members) == count and not members & stale:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker group is {state} with {len(members)} members "
                                   f"({len(members & stale)} stale), not Stable with {count} new ones")
            time.sleep(0.5)
        time.sleep(1.0)
        yield Workers(ids, processes, svc.logs)
    finally:
        _stop(processes)


# --- batches and runs ---


def _post(svc: Service, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(svc.base_url + path, json=body, headers=svc.headers, timeout=60)
    if response.status_code not in (200, 202):
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
    data: dict[str, Any] = response.json()["data"]
    return data


def connection(svc: Service, kind: str, url: str) -> int:
    return int(_post(svc, "/integration/connection",
                     {"name": f"{kind}-{uuid.uuid4().hex[:8]}", "type": kind, "url": url})["id"])


def batch(svc: Service, source_id: int, source_table: str, target_id: int, target_table: str, mode: str,
          chunk_size: int, split: dict[str, Any] | None) -> int:
    body: dict[str, Any] = {
        "name": f"split-bench-{uuid.uuid4().hex[:8]}", "sourceConnectionId": source_id,
        "source": {"table": source_table}, "targetConnectionId": target_id,
        "target": {"table": target_table, "mode": mode}, "chunkSize": chunk_size}
    if split is not None:
        body["split"] = split
    return int(_post(svc, "/integration/batch", body)["id"])


@dataclass
class Outcome:
    seconds: float
    run: dict[str, Any]
    slices: list[dict[str, Any]]
    cpu: float
    coordinator: str | None
    took_over: dict[str, int]
    state_connections: int
    """The most connections to the state store seen during the run (the API's and the workers')."""

    @property
    def by_worker(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for part in self.slices:
            counts[part["worker_id"]] = counts.get(part["worker_id"], 0) + 1
        return dict(sorted(counts.items()))

    def spread(self) -> str:
        """Slices per worker, the coordinator's marked *, with how many of them it took over: `[9* 7(+2)]`."""
        return "[" + " ".join(f"{n}{'*' if w == self.coordinator else ''}"
                              f"{f'(+{self.took_over[w]})' if self.took_over.get(w) else ''}"
                              for w, n in self.by_worker.items()) + "]"

    @property
    def after_last_slice(self) -> float | None:
        """Seconds from the last slice's end to the run's end (publish, reconciliation, completion)."""
        ends = [s["finished_at"] for s in self.slices if s["finished_at"] is not None]
        if not ends or self.run["finished_at"] is None:
            return None
        return float((self.run["finished_at"] - max(ends)).total_seconds())


async def _run_rows(state_dsn: str, run_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    conn = await asyncpg.connect(state_dsn)
    try:
        run = await conn.fetchrow("SELECT status, owner, records_written, reconciled, source_count, target_count, "
                                  "message, slices, created_at, started_at, finished_at FROM runs WHERE id = $1::uuid",
                                  run_id)
        slices = await conn.fetch("SELECT slice, status, worker_id, attempts, records_written, started_at, "
                                  "finished_at FROM run_slices WHERE run_id = $1::uuid ORDER BY slice", run_id)
        connections = await conn.fetchval("SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = "
                                          "current_database()")  # not this one
        return (dict(run, connections=int(connections)) if run else None), [dict(s) for s in slices]
    finally:
        await conn.close()


def sync(svc: Service, batch_id: int, crew: Workers, within: float = 3600) -> Outcome:
    """One sync of `batch_id`, timed from the request to the run being terminal in the state store."""
    cpu = crew.cpu_seconds()
    started = time.perf_counter()
    run_id = str(_post(svc, f"/integration/batch/{batch_id}/sync?wait=0")["runId"])
    coordinator: str | None = None
    connections = 0
    while True:
        run, slices = asyncio.run(_run_rows(svc.state_dsn, run_id))
        if run is not None and coordinator is None:
            coordinator = run["owner"]
        connections = max(connections, run["connections"] if run else 0)
        if run is not None and run["status"] in TERMINAL:
            break
        if time.perf_counter() - started > within:
            raise TimeoutError(f"run {run_id} not finished in {within:.0f} s")
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    if run["status"] != "SUCCESS":
        raise RuntimeError(f"run {run_id} ended {run['status']}: {run['message']} (logs in {svc.logs})")
    return Outcome(seconds, run, slices, crew.cpu_seconds() - cpu, coordinator, crew.took_over(run_id),
                   connections)


async def _pg(dsn: str, *statements: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        result = None
        for sql in statements:
            result = await conn.fetchval(sql) if sql.lstrip().upper().startswith("SELECT") else await conn.execute(sql)
        return result
    finally:
        await conn.close()


async def _fetchrow(dsn: str, sql: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(sql)
        assert row is not None
        return dict(row)
    finally:
        await conn.close()


async def _state_writes(state_dsn: str) -> dict[str, int]:
    """Rows inserted, updated and deleted so far in each table of the state store (its statistics)."""
    conn = await asyncpg.connect(state_dsn)
    try:
        rows = await conn.fetch("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS n FROM pg_stat_user_tables")
        return {str(r["relname"]): int(r["n"]) for r in rows}
    finally:
        await conn.close()


def state_writes(state_dsn: str) -> dict[str, int]:
    return asyncio.run(_state_writes(state_dsn))


def writes_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The state store's row writes per table between two `state_writes`, largest first."""
    grown = {t: n - before.get(t, 0) for t, n in after.items() if n > before.get(t, 0)}
    return dict(sorted(grown.items(), key=lambda item: -item[1]))


async def target_check(dsn: str, table: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(f"SELECT count(*), count(DISTINCT id) FROM {table}")
        assert row is not None
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


def checked(outcome: Outcome, rows: int, target_dsn: str, table: str) -> Outcome:
    """The run moved every row once: its counts, its reconciliation, and the target's rows and distinct ids."""
    run = outcome.run
    assert run["records_written"] == rows, run
    assert run["reconciled"] is True, run
    assert asyncio.run(target_check(target_dsn, table)) == (rows, rows), "the target is not exact"
    assert all(s["status"] == "SUCCESS" for s in outcome.slices), outcome.slices
    return outcome


@dataclass
class Line:
    name: str
    seconds: float
    detail: str = ""


def table(title: str, lines: list[Line], reference: float, label: str, rows: int) -> None:
    print(f"\n{title}")
    print(f"  {'':<46}{'seconds':>9}{'rows/s':>11}{label:>12}")
    for line in lines:
        ratio = reference / line.seconds
        print(f"  {line.name:<46}{line.seconds:9.2f}{rows / line.seconds:11,.0f}{ratio:11.2f}×  {line.detail}")


# --- part link ---


async def _mysql(*statements: str, database: str | None = "test") -> None:
    conn = await asyncmy.connect(**(MYSQL | {"database": database}), autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SET time_zone = '+00:00'")
            for sql in statements:
                await cur.execute(sql)
    finally:
        conn.close()


def part_link(svc: Service, rows: int, link_kib: float, rtt_ms: float, chunk_size: int) -> None:
    source_db, source_table = f"bs_split_{uuid.uuid4().hex[:8]}", "bench_src"
    per_slice = -(-rows // 16)
    print(f"\n[link] {rows:,} rows MariaDB → PostgreSQL through a link of {link_kib:g} KiB/s per connection and "
          f"{rtt_ms:g} ms per request; split by id, maxRowsPerSlice {per_slice:,}; append; chunk {chunk_size:,}; "
          f"{load()}", flush=True)
    with fresh_database("bs_split_dst") as target_dsn:
        try:
            # a database of its own: test sessions drop the tables they find new in MariaDB's `test` when they end
            asyncio.run(_mysql(f"CREATE DATABASE {source_db}", database=None))
            asyncio.run(_mysql(MYSQL_DDL.format(t=source_table), MYSQL_FILL.format(t=source_table, n=rows),
                               f"ANALYZE TABLE {source_table}", database=source_db))
            asyncio.run(_pg(target_dsn, TARGET_DDL.format(t="bench_dst")))
            with Link(3306, link_kib * 1024, rtt_ms / 1000) as link:
                source_id = connection(svc, "mysql", f"mysql://root@127.0.0.1:{link.port}/{source_db}")
                target_id = connection(svc, "postgresql", target_dsn)
                split_id = batch(svc, source_id, source_table, target_id, "bench_dst", "append", chunk_size,
                                 {"column": "id", "maxRowsPerSlice": per_slice})
                whole_id = batch(svc, source_id, source_table, target_id, "bench_dst", "append", chunk_size, None)
                lines: list[Line] = []
                for name, count, concurrency, lease, batch_id in (
                        ("split, 1 worker × concurrency 1", 1, 1, None, split_id),
                        ("split, 2 workers × concurrency 1", 2, 1, None, split_id),
                        ("split, 4 workers × concurrency 1", 4, 1, None, split_id),
                        ("split, 2 workers × concurrency 1, lease 3 s", 2, 1, 3.0, split_id),
                        ("split, 4 workers × concurrency 1, lease 3 s", 4, 1, 3.0, split_id),
                        ("split, 1 worker × concurrency 4", 1, 4, None, split_id),
                        ("unsplit, 1 worker", 1, 1, None, whole_id)):
                    asyncio.run(_pg(target_dsn, "TRUNCATE bench_dst"))
                    before = state_writes(svc.state_dsn)
                    with workers(svc, count, concurrency, lease) as crew:
                        carried = link.carried
                        outcome = checked(sync(svc, batch_id, crew), rows, target_dsn, "bench_dst")
                    time.sleep(1.0)  # the workers' connections closed: their statistics are in
                    writes = writes_between(before, state_writes(svc.state_dsn))
                    spread = f"{len(outcome.slices)} slices, per worker {outcome.spread()}" if outcome.slices else "-"
                    detail = (f"{spread}, worker CPU "
                              f"{outcome.cpu:5.1f} s ({outcome.cpu / outcome.seconds:4.0%} of wall), "
                              f"{(link.carried - carried) / outcome.seconds / 1024:6.0f} KiB/s over the link; {load()}")
                    lines.append(Line(name, outcome.seconds, detail))
                    print(f"  {name:<46}{outcome.seconds:8.2f} s  {detail}", flush=True)
                    print(f"  {'':<46}state store: up to {outcome.state_connections} connections (API and workers),"
                          f" {sum(writes.values()):,} row writes "
                          f"({', '.join(f'{t} {n:,}' for t, n in writes.items())})", flush=True)
            print(f"  the link carried {link.carried / rows / len(lines):.0f} bytes per row read, over "
                  f"{link.connections} connections")
        finally:
            asyncio.run(_mysql(f"DROP DATABASE IF EXISTS {source_db}", database=None))
    table(f"[link] {rows:,} rows; speedup against the 1-worker split run of this run", lines, lines[0].seconds,
          "speedup", rows)


# --- part pg ---


async def make_pg_source(dsn: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(TABLE_DDL.format(t="bench_src"))
        step = 1_000_000
        for start in range(0, rows, step):  # in pieces, so a 5M fill does not hold one huge transaction
            await conn.execute(PG_FILL.format(t="bench_src", n=min(start + step, rows))
                               .replace("generate_series(1,", f"generate_series({start + 1},"))
        await conn.execute("VACUUM ANALYZE bench_src")
    finally:
        await conn.close()


def part_pg(svc: Service, source_dsn: str, target_dsn: str, rows: int) -> None:
    """Every line right after a psql COPY pipe of the same rows: on a machine others load, a line is compared with
    the unsplit run through the ratio of each to the pipe before it."""
    print(f"\n[pg] {rows:,} rows × 9 columns PostgreSQL → PostgreSQL, one server; split by id with the default "
          f"maxRowsPerSlice (500,000); chunk 50,000; each line right after a psql binary COPY pipe; {load()}",
          flush=True)
    asyncio.run(_pg(target_dsn, TABLE_DDL.format(t="bench_dst")))
    started = time.perf_counter()
    asyncio.run(_pg(source_dsn, "SELECT count(*) FROM bench_src"))
    counting = time.perf_counter() - started
    size = int(asyncio.run(_pg(source_dsn, "SELECT pg_total_relation_size('bench_src')")))
    print(f"  count(*) of the source {counting:.2f} s; the source table takes {size / 2**20:,.0f} MiB "
          f"({size / rows:.0f} bytes a row)", flush=True)
    source_id = connection(svc, "postgresql", source_dsn)
    target_id = connection(svc, "postgresql", target_dsn)
    batches = {(mode, split): batch(svc, source_id, "bench_src", target_id, "bench_dst", mode, 50_000,
                                    {"column": "id"} if split else None)
               for mode in ("append", "overwrite") for split in (False, True)}
    results: dict[tuple[str, bool, int], tuple[float, Outcome]] = {}
    for count in (1, 2):
        with workers(svc, count, 1) as crew:
            for mode in ("append", "overwrite"):
                for split in (False, True):
                    asyncio.run(_pg(target_dsn, "TRUNCATE bench_dst", "CHECKPOINT"))
                    pipe = time_copy_pipe(source_dsn, target_dsn)
                    asyncio.run(_pg(target_dsn, "TRUNCATE bench_dst", "CHECKPOINT"))
                    outcome = checked(sync(svc, batches[(mode, split)], crew), rows, target_dsn, "bench_dst")
                    results[(mode, split, count)] = (pipe, outcome)
                    after = outcome.after_last_slice
                    extra = (f"; {len(outcome.slices)} slices, per worker {outcome.spread()}, "
                             f"after the last slice {after:.2f} s" if outcome.slices and after is not None else "")
                    print(f"  {mode:<9} {'split' if split else 'unsplit':<7} {count} worker(s): pipe {pipe:6.2f} s, "
                          f"run {outcome.seconds:7.2f} s, worker CPU {outcome.cpu:5.1f} s, up to "
                          f"{outcome.state_connections} state-store connections{extra}; {load()}", flush=True)
    asyncio.run(_pg(target_dsn, "TRUNCATE bench_dst"))
    checkpoints = asyncio.run(_fetchrow(target_dsn, "SELECT count(*) AS n, avg(pg_column_size(c.*)) AS avg, "
                                                    "pg_total_relation_size('_batchsync_checkpoints') AS size "
                                                    "FROM _batchsync_checkpoints c"))
    sliced = sum(len(o.slices) for _, o in results.values())
    print(f"  the target's _batchsync_checkpoints after {len(results)} runs ({sliced} slices): {checkpoints['n']} "
          f"rows, {float(checkpoints['avg'] or 0):.0f} bytes a row, {checkpoints['size'] / 1024:.0f} KiB in all")
    for mode in ("append", "overwrite"):
        base_pipe, base = results[(mode, False, 1)]
        print(f"\n[pg] {mode}, {rows:,} rows: each run against the pipe before it, and against the unsplit run on "
              f"1 worker by those ratios (>1: faster)")
        print(f"  {'':<40}{'pipe s':>8}{'run s':>8}{'rows/s':>10}{'× pipe':>8}{'× unsplit':>11}")
        for count in (1, 2):
            for split in (False, True):
                pipe, outcome = results[(mode, split, count)]
                vs_pipe = outcome.seconds / pipe
                after = outcome.after_last_slice
                detail = f"{len(outcome.slices)} slices" if outcome.slices else ""
                if outcome.slices and after is not None:
                    detail += f", after the last slice {after:.2f} s"
                name = f"{'split' if split else 'unsplit'}, {count} worker{'s' if count > 1 else ''} × concurrency 1"
                print(f"  {name:<40}{pipe:8.2f}{outcome.seconds:8.2f}{rows / outcome.seconds:10,.0f}"
                      f"{vs_pipe:8.2f}{(base.seconds / base_pipe) / vs_pipe:10.2f}×  {detail}")


# --- part plan ---


def part_plan(source_dsn: str, rows: int) -> None:
    from schemas.api import SourceSpec, SplitSpec
    from service.connectors.registry import REGISTRY
    from service.slicing import planner
    from service.sync.model import Endpoint

    async def plan(max_rows: int, exact: bool) -> tuple[int, int, float]:
        source: Any = REGISTRY.source_for(Endpoint("postgresql", url=source_dsn), SourceSpec(table="bench_src"), 5)
        calls = [0]
        counted: Callable[..., Any] = source.count_range

        async def count_range(*args: Any, **kwargs: Any) -> int:
            calls[0] += 1
            return int(await counted(*args, **kwargs))

        source.count_range = count_range
        saved = planner.EXACT_COUNTS_UP_TO
        planner.EXACT_COUNTS_UP_TO = 10 ** 12 if exact else 0
        try:
            async with source:
                started = time.perf_counter()
                ranges = await planner.plan_slices(source, SplitSpec(column="id", max_rows_per_slice=max_rows))
                return len(ranges), calls[0], time.perf_counter() - started
        finally:
            planner.EXACT_COUNTS_UP_TO = saved

    print(f"\n[plan] the planner on the {rows:,}-row source table, in this process; {load()}")
    for max_rows, exact in ((500_000, True), (max(rows // 2000, 1), True), (500_000, False),
                            (max(rows // 2000, 1), False)):
        slices, calls, seconds = asyncio.run(plan(max_rows, exact))
        print(f"  {'exact counts' if exact else 'estimates   '} maxRowsPerSlice {max_rows:>9,}: {slices:5,} slices, "
              f"{calls:5,} counts in {seconds:6.2f} s ({seconds / max(calls, 1) * 1000:6.2f} ms each)", flush=True)
    asyncio.run(publish_locks(source_dsn))


async def publish_locks(dsn: str, stages: int = 200) -> None:
    """The locks one transaction holds when it does what an overwrite's publish does for `stages` slices
    (service/connectors/postgresql/target.py `publish_stages`: per stage an INSERT … SELECT and a DROP)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE bench_publish (LIKE bench_src)")
        for i in range(stages):
            await conn.execute(f"CREATE UNLOGGED TABLE bench_stage_{i} AS SELECT * FROM bench_src WITH NO DATA")
            await conn.execute(f"INSERT INTO bench_stage_{i} SELECT * FROM bench_src WHERE id = {i + 1}")
        async with conn.transaction():
            await conn.execute("LOCK TABLE bench_publish IN SHARE ROW EXCLUSIVE MODE")
            await conn.execute("DELETE FROM bench_publish")
            for i in range(stages):
                await conn.execute(f"INSERT INTO bench_publish SELECT * FROM bench_stage_{i}")
                await conn.execute(f"DROP TABLE bench_stage_{i}")
            held = int(await conn.fetchval("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"))
        per_tx = int(await conn.fetchval("SELECT current_setting('max_locks_per_transaction')::int"))
        slots = per_tx * int(await conn.fetchval(
            "SELECT current_setting('max_connections')::int + current_setting('max_prepared_transactions')::int"))
        per_stage = held / stages
        print(f"  publish of {stages} stages in one transaction holds {held:,} locks ({per_stage:.1f} per slice); "
              f"the server's lock table: max_locks_per_transaction {per_tx} × connections = {slots:,} slots "
              f"(PostgreSQL lets a table overflow into spare shared memory), so a publish needs about "
              f"{per_stage * 2000:,.0f} for 2,000 slices")
    finally:
        await conn.execute("DROP TABLE IF EXISTS bench_publish")
        for i in range(stages):
            await conn.execute(f"DROP TABLE IF EXISTS bench_stage_{i}")
        await conn.close()


# --- part publish ---


def part_publish(source_dsn: str, target_dsn: str, rows: int) -> None:
    """A split overwrite's publish in this process, timed, then again under a 1 s I/O timeout: the publish is one
    operation under BATCHSYNC_IO_TIMEOUT_SECONDS (default 120 s), so a table whose publish takes longer fails
    after every slice succeeded, and again on each retry. Scaled down: 1 s stands for 120 s."""
    from bench.pg_to_pg import _Quiet
    from schemas.api import SourceSpec, SplitSpec, TargetSpec, WriteMode
    from service.connectors.registry import REGISTRY
    from service.slicing.planner import plan_slices
    from service.slicing.ranges import slice_key
    from service.sync.engine import execute, plan_split, publish_slices
    from service.sync.model import Endpoint, RunSpec
    from service.sync.retry import RetryPolicy

    async def measure() -> None:
        run_id = uuid.uuid4()
        spec = RunSpec(run_id=run_id, checkpoint_key=run_id, batch_id=0,
                       source_endpoint=Endpoint("postgresql", url=source_dsn), source=SourceSpec(table="bench_src"),
                       target_endpoint=Endpoint("postgresql", url=target_dsn),
                       target=TargetSpec(table="bench_publish", mode=WriteMode.OVERWRITE), mapping=None,
                       chunk_size=50_000)
        plan = await plan_split(spec, lambda source: plan_slices(source, SplitSpec(column="id", slices=4)),
                                connectors=REGISTRY, connect_timeout=5)
        keys = [str(slice_key(run_id, n)) for n in range(len(plan.ranges))]
        started = time.perf_counter()
        for key, where in zip(keys, plan.ranges, strict=True):
            await execute(replace(spec, slice=where, checkpoint_key=uuid.UUID(key)), _Quiet(), connectors=REGISTRY,
                          connect_timeout=5)
        print(f"  {len(keys)} slices staged in {time.perf_counter() - started:.2f} s", flush=True)
        started = time.perf_counter()
        try:
            await publish_slices(spec, keys, read=rows, written=rows, rejected=0, connectors=REGISTRY,
                                 connect_timeout=5, io_timeout=1.0, policy=RetryPolicy(budget=5))
            print("  I/O timeout 1 s: published (faster than 1 s: no failure to show at this size)")
        except Exception as exc:
            print(f"  I/O timeout 1 s: the publish FAILED after {time.perf_counter() - started:.2f} s of retries: "
                  f"{type(exc).__name__}: {exc}", flush=True)
        columns = ["id", "qty", "price", "ratio", "label", "created_at", "day", "active", "attrs"]
        async with REGISTRY.target_for(spec.target_endpoint, spec.target, 5) as target:
            started = time.perf_counter()
            await target.publish_stages(keys, columns)  # type: ignore[attr-defined]
            seconds = time.perf_counter() - started
        count = int(await _pg(target_dsn, "SELECT count(*) FROM bench_publish"))
        assert count == rows, count
        print(f"  no I/O timeout: publish_stages (DELETE, INSERT … SELECT of {len(keys)} stages, one transaction) "
              f"{seconds:.2f} s, {rows / seconds:,.0f} rows/s; the default 120 s covers about "
              f"{120 * rows / seconds / 1e6:,.0f} million rows on this machine now", flush=True)

    print(f"\n[publish] a split overwrite of {rows:,} rows published in this process; {load()}")
    logging.getLogger("service.sync").setLevel(logging.ERROR)  # each retry logs a line
    asyncio.run(_pg(target_dsn, "DROP TABLE IF EXISTS bench_publish", TABLE_DDL.format(t="bench_publish")))
    try:
        asyncio.run(measure())
    finally:
        asyncio.run(_pg(target_dsn, "DROP TABLE IF EXISTS bench_publish"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of the PostgreSQL → PostgreSQL part")
    parser.add_argument("--link-rows", type=int, default=400_000, help="rows of the waiting-source part")
    parser.add_argument("--link-kib", type=float, default=1024, help="KiB/s per connection over the link")
    parser.add_argument("--rtt-ms", type=float, default=10, help="delay of every request over the link")
    parser.add_argument("--chunk-size", type=int, default=10_000, help="chunk size of the waiting-source batch")
    parser.add_argument("--only", choices=["link", "pg", "plan", "publish"], action="append")
    parser.add_argument("--quick", action="store_true", help="100,000 rows through the link, 1,000,000 PG→PG")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs even on success")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.link_rows = 1_000_000, 100_000
    parts = args.only or ["link", "pg", "plan", "publish"]
    print(f"{load()} on {os.cpu_count()} cores at the start; parts {', '.join(parts)}")
    logs = Path(tempfile.mkdtemp(prefix="bench-split-"))
    ok = False
    try:
        with fresh_database("bs_split_state") as state_dsn, fresh_database("bs_split_src") as source_dsn, \
                fresh_database("bs_split_pgdst") as target_dsn:
            if {"pg", "plan", "publish"} & set(parts):
                started = time.perf_counter()
                asyncio.run(make_pg_source(source_dsn, args.rows))
                print(f"source table of {args.rows:,} rows filled in {time.perf_counter() - started:.0f} s", flush=True)
            if "link" in parts or "pg" in parts:
                with service(state_dsn, logs) as svc:
                    if "link" in parts:
                        part_link(svc, args.link_rows, args.link_kib, args.rtt_ms, args.chunk_size)
                    if "pg" in parts:
                        part_pg(svc, source_dsn, target_dsn, args.rows)
            if "plan" in parts:
                part_plan(source_dsn, args.rows)
            if "publish" in parts:
                part_publish(source_dsn, target_dsn, args.rows)
        ok = True
    finally:
        if ok and not args.keep_logs:
            for log in logs.iterdir():
                log.unlink()
            logs.rmdir()
        else:
            print(f"process logs kept in {logs}")


if __name__ == "__main__":
    main()

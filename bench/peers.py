"""batchsync next to its peers on one PostgreSQL → PostgreSQL table, each with its ratio to a psql COPY pipe.

    .venv/bin/pip install -e '.[bench]'                 # dlt with connectorx, Sling; Debian: apt-get install pgloader
    .venv/bin/python -m bench.peers                      # 1,000,000 rows
    .venv/bin/python -m bench.peers --quick              # 200,000 rows
    .venv/bin/python -m bench.peers --peer-python /path/to/venv/bin/python   # peers installed elsewhere

The table is bench/pg_to_pg.py's (9 columns: bigint key, integer, numeric, double, text, timestamptz, date,
boolean, jsonb). Every tool loads it whole into an empty table of the target database and is timed from its
start to its exit (a command-line tool's start-up included, as a user would run it), then the target's row
count is checked:

- psql binary COPY pipe: the reference, measured first and again last (the machine's drift shows);
- batchsync: the engine in this process (`execute()`), append and overwrite;
- pgloader (Debian package): `LOAD DATABASE … WITH data only, truncate` from pgsql to pgsql;
- Sling (PyPI `sling`, its binary from `sling-linux-amd64`): `sling run … --mode full-refresh`;
- dlt (PyPI, `sql_table` with the connectorx backend, the postgres destination's csv/COPY loader), `replace`.

A peer that is not installed or fails is reported as skipped with the reason; the others still run.
"""

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from bench.pg_to_pg import SOURCE, TARGET, bench_spec, make_dataset, scratch_databases, time_copy_pipe, time_execute
from schemas.api import WriteMode

T = TypeVar("T")

DLT_SCRIPT = """
import sys
import dlt
from dlt.sources.sql_database import sql_table

source_dsn, target_dsn, table, workdir = sys.argv[1:5]
source = sql_table(credentials=source_dsn, table=table, backend="connectorx", chunk_size=50000)
pipeline = dlt.pipeline(pipeline_name="batchsync_bench", destination=dlt.destinations.postgres(target_dsn),
                        dataset_name="dlt_bench", pipelines_dir=workdir)
pipeline.run(source, write_disposition="replace", loader_file_format="csv")
"""

PGLOADER = """LOAD DATABASE
     FROM pgsql://postgres@{host}:{port}/{source_db}
     INTO pgsql://postgres@{host}:{port}/{target_db}
WITH data only, truncate, workers = 2, concurrency = 1
INCLUDING ONLY TABLE NAMES MATCHING '{table}' IN SCHEMA 'public';
"""


_LOOP = asyncio.new_event_loop()
"""One event loop for the whole run: the engine parks its connections on the loop that opened them."""


def _wait(coroutine: Coroutine[Any, Any, T]) -> T:
    return _LOOP.run_until_complete(coroutine)


class Skipped(Exception):
    """The peer cannot run here; the message says why."""


@dataclass
class Result:
    name: str
    seconds: float | None
    note: str = ""


def _database(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


async def _count(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def _reset(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def _run(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=3600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Skipped(f"exited {done.returncode}: {' | '.join(tail)}")
    return seconds


def pgloader(source_dsn: str, target_dsn: str, workdir: str) -> float:
    if shutil.which("pgloader") is None:
        raise Skipped("pgloader not installed (Debian: apt-get install -y pgloader)")
    _wait(_reset(target_dsn, f"DROP TABLE IF EXISTS {SOURCE}; CREATE TABLE {SOURCE} (LIKE {TARGET})"))
    command = Path(workdir, "peer.load")
    command.write_text(PGLOADER.format(host="127.0.0.1", port=5432, source_db=_database(source_dsn),
                                       target_db=_database(target_dsn), table=SOURCE))
    return _run(["pgloader", "--root-dir", workdir, str(command)], cwd=workdir)


def sling_binary(peer_python: str) -> str:
    """The Sling binary shipped by the PyPI package `sling-linux-amd64` (the `sling` wrapper downloads it
    at first use otherwise, which fails without network), or a `sling` on PATH."""
    found = subprocess.run([peer_python, "-c", "import sling_linux_amd64 as s; print(s.SLING_BIN)"],
                           capture_output=True, text=True)
    if found.returncode == 0 and os.path.exists(found.stdout.strip()):
        return found.stdout.strip()
    on_path = shutil.which("sling")
    if on_path is None:
        raise Skipped("Sling not installed (PyPI: sling and sling-linux-amd64, the `bench` extra)")
    return on_path


def sling(source_dsn: str, target_dsn: str, workdir: str, peer_python: str) -> float:
    binary = sling_binary(peer_python)
    _wait(_reset(target_dsn, "DROP TABLE IF EXISTS bench_sling"))
    env = {**os.environ, "SLING_DISABLE_TELEMETRY": "true", "SLING_HOME_DIR": workdir,
           "BENCH_SRC": f"{source_dsn}?sslmode=disable", "BENCH_DST": f"{target_dsn}?sslmode=disable"}
    return _run([binary, "run", "--src-conn", "BENCH_SRC", "--src-stream", f"public.{SOURCE}",
                 "--tgt-conn", "BENCH_DST", "--tgt-object", "public.bench_sling", "--mode", "full-refresh"], env=env)


def dlt(source_dsn: str, target_dsn: str, workdir: str, peer_python: str) -> float:
    probe = subprocess.run([peer_python, "-c", "import dlt, connectorx, pyarrow, psycopg2"], capture_output=True)
    if probe.returncode != 0:
        raise Skipped("dlt, connectorx, pyarrow or psycopg2 not importable (the `bench` extra)")
    _wait(_reset(target_dsn, "DROP SCHEMA IF EXISTS dlt_bench CASCADE"))
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
    source = source_dsn.replace("postgresql://", "postgresql+psycopg2://", 1)
    target = target_dsn.replace("postgresql://postgres@", "postgresql://postgres:unused@", 1)  # dlt wants one
    return _run([peer_python, "-c", DLT_SCRIPT, source, target, SOURCE, workdir], env=env, cwd=workdir)


def batchsync(source_dsn: str, target_dsn: str, mode: WriteMode, chunk_size: int) -> float:
    _wait(_reset(target_dsn, f"TRUNCATE {TARGET}"))
    seconds, _ = _wait(time_execute(bench_spec(source_dsn, target_dsn, mode, chunk_size)))
    return seconds


def pipe(source_dsn: str, target_dsn: str) -> float:
    _wait(_reset(target_dsn, f"TRUNCATE {TARGET}"))
    return time_copy_pipe(source_dsn, target_dsn)


def run(rows: int, repeat: int, chunk_size: int, peer_python: str) -> list[Result]:
    results: list[Result] = []
    with scratch_databases() as (source_dsn, target_dsn), tempfile.TemporaryDirectory(prefix="peers-") as workdir:
        _wait(make_dataset(source_dsn, target_dsn, rows))
        loaded = {"pgloader": SOURCE, "Sling": "bench_sling", "dlt": "dlt_bench." + SOURCE}
        tools: list[tuple[str, Callable[[], float], str]] = [
            ("psql binary COPY pipe", lambda: pipe(source_dsn, target_dsn), TARGET),
            ("batchsync append", lambda: batchsync(source_dsn, target_dsn, WriteMode.APPEND, chunk_size), TARGET),
            ("batchsync overwrite", lambda: batchsync(source_dsn, target_dsn, WriteMode.OVERWRITE, chunk_size),
             TARGET),
            ("pgloader", lambda: pgloader(source_dsn, target_dsn, workdir), loaded["pgloader"]),
            ("Sling", lambda: sling(source_dsn, target_dsn, workdir, peer_python), loaded["Sling"]),
            ("dlt (connectorx)", lambda: dlt(source_dsn, target_dsn, workdir, peer_python), loaded["dlt"]),
            ("psql binary COPY pipe, again", lambda: pipe(source_dsn, target_dsn), TARGET),
        ]
        for name, load, table in tools:
            try:
                timings = [load() for _ in range(repeat)]
                count = _wait(_count(target_dsn, table))
                if count != rows:
                    raise Skipped(f"loaded {count:,} rows, not {rows:,}")
                results.append(Result(name, statistics.median(timings)))
            except Skipped as why:
                results.append(Result(name, None, f"skipped: {why}"))
            print(f"  {name:<32} {_seconds(results[-1])}", flush=True)
    return results


def _seconds(result: Result) -> str:
    return f"{result.seconds:7.2f} s" if result.seconds is not None else result.note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="median of N for each tool")
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--peer-python", default=sys.executable,
                        help="the Python whose environment has dlt, connectorx and Sling (default: this one)")
    parser.add_argument("--quick", action="store_true", help="200,000 rows")
    args = parser.parse_args()
    if args.quick:
        args.rows = 200_000
    print(f"{args.rows:,} rows × 9 columns, PostgreSQL → PostgreSQL on this machine, median of {args.repeat}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the start")
    results = run(args.rows, args.repeat, args.chunk_size, args.peer_python)
    reference = results[0].seconds
    print(f"\n{'':<34}{'seconds':>9}{'rows/s':>12}{'× pipe':>9}")
    for result in results:
        if result.seconds is None or reference is None:
            print(f"{result.name:<34}  {result.note}")
            continue
        print(f"{result.name:<34}{result.seconds:9.2f}{args.rows / result.seconds:12,.0f}"
              f"{result.seconds / reference:9.2f}")


if __name__ == "__main__":
    main()

"""PostgreSQL → PostgreSQL throughput against a psql binary COPY pipe, on scratch databases.

    .venv/bin/python -m bench.pg_to_pg --rows 1000000            # through the HTTP sync (API + worker)
    .venv/bin/python -m bench.pg_to_pg --rows 1000000 --engine   # the engine alone, in this process
    .venv/bin/python -m bench.pg_to_pg --quick                    # 200,000 rows, best of 1, 15 small syncs

The HTTP run starts a broker, the API and a worker as separate processes, times
`POST /integration/batch/{id}/sync` for append and upsert, reads the worker's peak RSS, and times 40
syncs of a 100-row batch (the request-reply round trip). Every line prints its ratio to the pipe
measured in the same run. The engine run adds two lines for the changed-rows upsert: the same code with
its merges on one connection (the path before pipelining), and a target whose fill factor leaves room for
HOT updates (a setting users choose, docs/performance.md).
"""

import argparse
import asyncio
import contextlib
import os
import resource
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg

from schemas.api import SourceSpec, TargetSpec, WriteMode
from service.connectors.registry import REGISTRY
from service.sync.engine import execute
from service.sync.model import Endpoint, ProgressUpdate, RunResult, RunSpec
from tests.support.databases import fresh_database

TABLE_DDL = """CREATE TABLE {t} (
    id bigint PRIMARY KEY, qty integer, price numeric(12,2), ratio double precision, label text,
    created_at timestamptz, day date, active boolean, attrs jsonb)"""
FILL = """INSERT INTO {t}
    SELECT g, g % 1000, (g % 100000) / 100.0, g / 7.0, 'item-' || g || '-' || md5(g::text),
           '2024-01-01'::timestamptz + g * interval '1 second', '2024-01-01'::date + (g % 3650),
           g % 3 = 0, jsonb_build_object('g', g, 'tag', 't' || (g % 10))
      FROM generate_series(1, {n}) g"""
SOURCE, TARGET = "bench_src", "bench_dst"


@contextlib.contextmanager
def scratch_databases() -> Iterator[tuple[str, str]]:
    """A source and a target database, dropped afterwards."""
    with fresh_database("bs_bench_src") as source, fresh_database("bs_bench_dst") as target:
        yield source, target


async def make_dataset(source_dsn: str, target_dsn: str, rows: int) -> None:
    """The 9-column source table with `rows` rows (vacuumed, so keyset scans are index-only) and an empty twin."""
    src, dst = await asyncpg.connect(source_dsn), await asyncpg.connect(target_dsn)
    try:
        await src.execute(TABLE_DDL.format(t=SOURCE))
        await src.execute(FILL.format(t=SOURCE, n=rows))
        await src.execute(f"VACUUM ANALYZE {SOURCE}")
        await dst.execute(TABLE_DDL.format(t=TARGET))
    finally:
        await src.close()
        await dst.close()


async def truncate_target(target_dsn: str) -> None:
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(f"TRUNCATE {TARGET}")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def set_fillfactor(target_dsn: str, percent: int) -> None:
    """The target's fill factor, its rows rewritten so that every page has the room (VACUUM FULL)."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(f"ALTER TABLE {TARGET} SET (fillfactor = {percent})")
        await conn.execute(f"VACUUM FULL ANALYZE {TARGET}")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


@contextlib.contextmanager
def merges_on_one_connection() -> Iterator[None]:
    """The upsert as it was before pipelining: every chunk staged and merged on the target's connection."""
    from service.connectors.postgresql.upsert import PipelinedUpsert

    PipelinedUpsert.pipelining = property(lambda _: False, lambda _, __: None)  # type: ignore[assignment]
    try:
        yield
    finally:
        del PipelinedUpsert.pipelining


async def change_every_source_row(source_dsn: str) -> None:
    """Make every source row differ from its target copy, so the next upsert must rewrite them all."""
    conn = await asyncpg.connect(source_dsn)
    try:
        await conn.execute(f"UPDATE {SOURCE} SET qty = qty + 1")
        await conn.execute(f"VACUUM ANALYZE {SOURCE}")
    finally:
        await conn.close()


def time_copy_pipe(source_dsn: str, target_dsn: str) -> float:
    """Seconds for `psql COPY (SELECT …) TO STDOUT (FORMAT binary) | psql COPY … FROM STDIN (FORMAT binary)`."""
    started = time.perf_counter()
    out = subprocess.Popen(
        ["psql", "-X", "-q", "-d", source_dsn, "-c", f"COPY (SELECT * FROM {SOURCE}) TO STDOUT (FORMAT binary)"],
        stdout=subprocess.PIPE,
    )
    into = subprocess.run(
        ["psql", "-X", "-q", "-d", target_dsn, "-c", f"COPY {TARGET} FROM STDIN (FORMAT binary)"],
        stdin=out.stdout,
        check=True,
        capture_output=True,
    )
    assert out.stdout is not None
    out.stdout.close()
    if out.wait() != 0 or into.returncode != 0:
        raise RuntimeError("the psql COPY pipe failed")
    return time.perf_counter() - started


class _Quiet:
    async def on_start(self, resumed_from_chunk: int, total_estimate: int | None) -> None:
        return None

    async def on_chunk(self, update: ProgressUpdate) -> None:
        return None

    async def on_phase(self, update: ProgressUpdate) -> None:
        return None

    def cancel_requested(self) -> bool:
        return False


def bench_spec(source_dsn: str, target_dsn: str, mode: WriteMode, chunk_size: int) -> RunSpec:
    run_id = uuid.uuid4()
    return RunSpec(
        run_id=run_id,
        checkpoint_key=run_id,
        batch_id=0,
        source_endpoint=Endpoint("postgresql", url=source_dsn),
        source=SourceSpec(table=SOURCE),
        target_endpoint=Endpoint("postgresql", url=target_dsn),
        target=TargetSpec(table=TARGET, mode=mode, key_columns=["id"] if mode is WriteMode.UPSERT else None),
        mapping=None,
        chunk_size=chunk_size,
    )


async def time_execute(spec: RunSpec) -> tuple[float, RunResult]:
    """Seconds for one engine run of `spec`."""
    started = time.perf_counter()
    result = await execute(spec, _Quiet(), connectors=REGISTRY, connect_timeout=5)
    return time.perf_counter() - started, result


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Line:
    name: str
    seconds: float
    rows: int


async def run(source_dsn: str, target_dsn: str, rows: int, chunk_size: int, repeat: int) -> list[Line]:
    await make_dataset(source_dsn, target_dsn, rows)
    lines: list[Line] = []

    async def best(name: str, mode: WriteMode | None, *, keep_rows: bool = False, times: int = repeat) -> None:
        timings = []
        for _ in range(times):
            if not keep_rows:
                await truncate_target(target_dsn)
            if mode is None:
                timings.append(await asyncio.to_thread(time_copy_pipe, source_dsn, target_dsn))
            else:
                seconds, result = await time_execute(bench_spec(source_dsn, target_dsn, mode, chunk_size))
                assert result.records_written == rows, result
                timings.append(seconds)
        lines.append(Line(name, min(timings), rows))
        print(f"  {name:<38} {min(timings):7.2f} s   peak RSS {peak_rss_mb():6.0f} MB", flush=True)

    await best("psql binary COPY pipe", None)
    await best("execute() append", WriteMode.APPEND)
    await best("execute() upsert, empty", WriteMode.UPSERT)
    await best("execute() upsert, rows exist, same", WriteMode.UPSERT, keep_rows=True)
    await change_every_source_row(source_dsn)
    await best("execute() upsert, rows exist, changed", WriteMode.UPSERT, keep_rows=True, times=1)
    await change_every_source_row(source_dsn)
    with merges_on_one_connection():
        await best("  same, merges on one connection", WriteMode.UPSERT, keep_rows=True, times=1)
    await set_fillfactor(target_dsn, 70)
    await change_every_source_row(source_dsn)
    await best("  same, target fillfactor 70", WriteMode.UPSERT, keep_rows=True, times=1)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2, help="best of N for each line")
    parser.add_argument("--engine", action="store_true", help="time the engine in-process instead of HTTP")
    parser.add_argument("--small-syncs", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="200,000 rows, best of 1, 15 small syncs")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat, args.small_syncs = 200_000, 1, 15
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the start")
    print(f"{args.rows:,} rows × 9 columns, chunk size {args.chunk_size:,}, best of {args.repeat}")
    with scratch_databases() as (source_dsn, target_dsn):
        if args.engine:
            lines = asyncio.run(run(source_dsn, target_dsn, args.rows, args.chunk_size, args.repeat))
        else:
            from bench.http_sync import run_http

            lines = run_http(source_dsn, target_dsn, args.rows, args.chunk_size, args.repeat, args.small_syncs)
    reference = lines[0].seconds
    print(f"\n{'':<40}{'seconds':>9}{'rows/s':>12}{'× pipe':>9}")
    for line in lines:
        print(f"{line.name:<40}{line.seconds:9.2f}{line.rows / line.seconds:12,.0f}{line.seconds / reference:9.2f}")
    print(f"peak RSS of this process: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()

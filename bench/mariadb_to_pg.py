"""MariaDB → PostgreSQL throughput of `service.sync.engine.execute` against a client pipe, in one run.

    .venv/bin/python -m bench.mariadb_to_pg --rows 1000000

The reference is `mariadb --batch --skip-column-names -e "SELECT …" | psql -c "\\copy t FROM STDIN"`:
MariaDB's batch output is tab-separated with the same backslash escapes as PostgreSQL's text COPY, and
prints NULL as `NULL` (hence `NULL 'NULL'`); both sessions run in UTC. Each line prints its time, its
ratio to the pipe, and the peak RSS of this process; the engine's target must equal the pipe's
(count and checksum).
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

import asyncmy
import asyncpg

from bench.pg_to_pg import _Quiet
from schemas.api import SourceSpec, TargetSpec, WriteMode
from service.connectors.registry import REGISTRY
from service.sync.engine import execute
from service.sync.model import Endpoint, RunSpec
from tests.support.databases import fresh_database

MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "database": "test"}
MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
SOURCE_DDL = """CREATE TABLE {t} (
    id BIGINT PRIMARY KEY, qty INT, price DECIMAL(12,2), ratio DOUBLE, label VARCHAR(100),
    created_at DATETIME(6), day DATE, active BOOLEAN, attrs JSON) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
FILL = """INSERT INTO {t}
    SELECT seq, seq % 1000, (seq % 100000) / 100.0, seq / 7.0, CONCAT('item-', seq, '-', MD5(seq)),
           TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND, DATE '2024-01-01' + INTERVAL (seq % 3650) DAY,
           seq % 3 = 0, JSON_OBJECT('g', seq, 'tag', CONCAT('t', seq % 10))
      FROM seq_1_to_{n}"""
TARGET_DDL = """CREATE TABLE {t} (
    id bigint PRIMARY KEY, qty integer, price numeric(12,2), ratio double precision, label text,
    created_at timestamptz, day date, active boolean, attrs jsonb)"""
COLUMNS = "id, qty, price, ratio, label, created_at, day, active, attrs"


async def _pg(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _mysql(sql: str) -> None:
    conn = await asyncmy.connect(**MYSQL, autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SET time_zone = '+00:00'")
            await cur.execute(sql)
    finally:
        conn.close()


@contextlib.contextmanager
def scratch(rows: int) -> Iterator[tuple[str, str]]:
    """A MariaDB source table with `rows` rows and a PostgreSQL database with an empty twin; both dropped."""
    table = f"bench_src_{uuid.uuid4().hex[:8]}"
    with fresh_database("bs_bench_my") as dsn:
        yield from _filled(table, rows, dsn)


def _filled(table: str, rows: int, dsn: str) -> Iterator[tuple[str, str]]:
    try:
        asyncio.run(_mysql(SOURCE_DDL.format(t=table)))
        asyncio.run(_mysql(FILL.format(t=table, n=rows)))
        asyncio.run(_mysql(f"ANALYZE TABLE {table}"))
        asyncio.run(_pg(dsn, TARGET_DDL.format(t="bench_dst")))
        yield table, dsn
    finally:
        asyncio.run(_mysql(f"DROP TABLE IF EXISTS {table}"))


def time_pipe(table: str, dsn: str) -> float:
    env = os.environ | {"PGTZ": "UTC"}
    started = time.perf_counter()
    out = subprocess.Popen(
        ["mariadb", "-h", "127.0.0.1", "-u", "root", "test", "--batch", "--skip-column-names",
         "--default-character-set=utf8mb4", "-e", f"SET time_zone = '+00:00'; SELECT {COLUMNS} FROM {table}"],
        stdout=subprocess.PIPE,
    )
    into = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c",
         "\\copy bench_dst FROM STDIN WITH (FORMAT text, NULL 'NULL')"],
        stdin=out.stdout, capture_output=True, env=env,
    )
    assert out.stdout is not None
    out.stdout.close()
    if out.wait() != 0 or into.returncode != 0:
        raise RuntimeError(f"the mariadb | psql pipe failed: {into.stderr.decode()[:500]}")
    return time.perf_counter() - started


async def time_engine(table: str, dsn: str, chunk_size: int) -> tuple[float, int]:
    run_id = uuid.uuid4()
    spec = RunSpec(run_id=run_id, checkpoint_key=run_id, batch_id=0, source_endpoint=Endpoint("mysql", url=MYSQL_URL),
                   source=SourceSpec(table=table), target_endpoint=Endpoint("postgresql", url=dsn),
                   target=TargetSpec(table="bench_dst", mode=WriteMode.APPEND), mapping=None, chunk_size=chunk_size)
    started = time.perf_counter()
    result = await execute(spec, _Quiet(), connectors=REGISTRY, connect_timeout=5)
    return time.perf_counter() - started, result.records_written


async def fingerprint(dsn: str) -> tuple[int, str]:
    sql = "SELECT count(*)::text || ' ' || md5(string_agg(t::text, '|' ORDER BY t.id)) FROM bench_dst t"
    count, digest = str(await _pg(dsn, sql)).split(" ")
    return int(count), digest


async def measure(table: str, dsn: str, rows: int, chunk_size: int, repeat: int) -> None:
    """Pipe and engine alternately, best of `repeat`, in one event loop (connectors may keep connections)."""
    pipe, engine = [], []
    reference = None
    for _ in range(repeat):
        await _pg(dsn, "TRUNCATE bench_dst")
        pipe.append(await asyncio.to_thread(time_pipe, table, dsn))
        reference = await fingerprint(dsn)
        await _pg(dsn, "TRUNCATE bench_dst")
        seconds, written = await time_engine(table, dsn, chunk_size)
        engine.append(seconds)
        assert written == rows and await fingerprint(dsn) == reference, "engine result differs from the pipe"
    best_pipe, best_engine = min(pipe), min(engine)
    print(f"  mariadb | psql \\copy pipe      {best_pipe:7.2f} s  {rows / best_pipe:10,.0f} rows/s")
    print(f"  execute() append               {best_engine:7.2f} s  {rows / best_engine:10,.0f} rows/s"
          f"  ratio {best_engine / best_pipe:5.2f}×  peak RSS {peak_rss_mb():6.0f} MB")
    if reference:
        print(f"  target equals the pipe's: {reference[0]:,} rows, md5 {reference[1]}")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2, help="best of N for each line")
    args = parser.parse_args()
    print(f"{args.rows:,} rows × 9 columns MariaDB → PostgreSQL, chunk size {args.chunk_size:,}, best of {args.repeat}")
    with scratch(args.rows) as (table, dsn):
        asyncio.run(measure(table, dsn, args.rows, args.chunk_size, args.repeat))


if __name__ == "__main__":
    main()

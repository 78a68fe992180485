"""CSV → PostgreSQL throughput of the engine against `psql \\copy … FROM 'file.csv' (FORMAT csv, HEADER)`.

    .venv/bin/python -m bench.csv_to_pg --rows 1000000

The CSV is PostgreSQL's own export of the 9-column bench table (`bench/pg_to_pg.py`), so both sides load
the same bytes into an empty twin table. Prints seconds, rows/s, the ratio to `\\copy` measured in the
same run, and this process's peak RSS (the engine runs in-process; psql in its own).
"""

import argparse
import asyncio
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from bench.pg_to_pg import FILL, SOURCE, TABLE_DDL, TARGET, _Quiet, peak_rss_mb, scratch_databases
from schemas.api import SourceSpec, TargetSpec, WriteMode
from service.sync.engine import execute
from service.sync.model import Endpoint, RunSpec


async def prepare(source_dsn: str, target_dsn: str, rows: int) -> None:
    src, dst = await asyncpg.connect(source_dsn), await asyncpg.connect(target_dsn)
    try:
        await src.execute(TABLE_DDL.format(t=SOURCE))
        await src.execute(FILL.format(t=SOURCE, n=rows))
        await dst.execute(TABLE_DDL.format(t=TARGET))
    finally:
        await src.close()
        await dst.close()


def psql(dsn: str, command: str) -> float:
    started = time.perf_counter()
    subprocess.run(["psql", "-X", "-q", "-d", dsn, "-c", command], check=True, capture_output=True)
    return time.perf_counter() - started


async def truncate(target_dsn: str) -> None:
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(f"TRUNCATE {TARGET}")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def count(target_dsn: str) -> int:
    conn = await asyncpg.connect(target_dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {TARGET}"))
    finally:
        await conn.close()


async def time_engine(folder: Path, target_dsn: str, chunk_size: int) -> float:
    run_id = uuid.uuid4()
    spec = RunSpec(run_id=run_id, checkpoint_key=run_id, batch_id=0,
                   source_endpoint=Endpoint("csv", params={"path": str(folder)}), source=SourceSpec(table="bench"),
                   target_endpoint=Endpoint("postgresql", url=target_dsn),
                   target=TargetSpec(table=TARGET, mode=WriteMode.APPEND), mapping=None, chunk_size=chunk_size)
    started = time.perf_counter()
    await execute(spec, _Quiet(), connect_timeout=5)
    return time.perf_counter() - started


async def run(source_dsn: str, target_dsn: str, rows: int, chunk_size: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path = folder / "bench.csv"
        await prepare(source_dsn, target_dsn, rows)
        psql(source_dsn, f"\\copy {SOURCE} TO '{csv_path}' WITH (FORMAT csv, HEADER)")
        size_mb = csv_path.stat().st_size / 2**20
        print(f"{rows:,} rows × 9 columns, {size_mb:.0f} MB of CSV, chunk size {chunk_size:,}, best of {repeat}")

        reference, engine = [], []
        for _ in range(repeat):
            await truncate(target_dsn)
            reference.append(psql(target_dsn, f"\\copy {TARGET} FROM '{csv_path}' WITH (FORMAT csv, HEADER)"))
            assert await count(target_dsn) == rows
            await truncate(target_dsn)
            engine.append(await time_engine(folder, target_dsn, chunk_size))
            assert await count(target_dsn) == rows
        ref, ours = min(reference), min(engine)
        print(f"  psql \\copy FROM csv        {ref:7.2f} s  {rows / ref:10,.0f} rows/s")
        print(f"  execute() csv → postgresql {ours:7.2f} s  {rows / ours:10,.0f} rows/s  "
              f"ratio {ours / ref:5.2f}×  peak RSS {peak_rss_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2, help="best of N for each line")
    args = parser.parse_args()
    with scratch_databases() as (source_dsn, target_dsn):
        asyncio.run(run(source_dsn, target_dsn, args.rows, args.chunk_size, args.repeat))


if __name__ == "__main__":
    main()

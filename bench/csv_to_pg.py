"""CSV → PostgreSQL throughput of the engine against `psql \\copy … FROM 'file.csv' (FORMAT csv, HEADER)`.

    .venv/bin/python -m bench.csv_to_pg --rows 1000000

The CSV is PostgreSQL's own export of the 9-column bench table (`bench/pg_to_pg.py`), so both sides load
the same bytes into an empty twin table. Prints seconds, rows/s, the ratio to `\\copy` measured in the
same run, and this process's peak RSS (the engine runs in-process; psql in its own). Two engine paths: the
CSV copy stream (records handed to COPY … (FORMAT csv) undecoded) and decoded rows (forced by a cast).
"""

import argparse
import asyncio
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from bench.pg_to_pg import FILL, SOURCE, TABLE_DDL, TARGET, _Quiet, peak_rss_mb, scratch_databases, truncate_target
from schemas.api import MappingEntry, SourceSpec, TargetSpec, WriteMode
from service.connectors.registry import REGISTRY
from service.sync.engine import execute
from service.sync.model import Endpoint, RunSpec
from tests.support.policy import policy_for

PATHS: dict[str, list[MappingEntry] | None] = {
    "execute() csv → postgresql, COPY csv stream": None,
    "execute() decoded rows (mapping casts id)": [MappingEntry.model_validate({"from": "id", "type": "int"})],
}
"""No mapping takes the CSV copy stream; a cast makes the source decode and convert every value."""
REFERENCE = "psql \\copy FROM csv"


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


async def count(target_dsn: str) -> int:
    conn = await asyncpg.connect(target_dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {TARGET}"))
    finally:
        await conn.close()


async def time_engine(folder: Path, target_dsn: str, chunk_size: int, mapping: list[MappingEntry] | None) -> float:
    run_id = uuid.uuid4()
    spec = RunSpec(run_id=run_id, checkpoint_key=run_id, batch_id=0,
                   source_endpoint=Endpoint("csv", params={"path": str(folder)}, policy=policy_for(folder)),
                   source=SourceSpec(table="bench"),
                   target_endpoint=Endpoint("postgresql", url=target_dsn),
                   target=TargetSpec(table=TARGET, mode=WriteMode.APPEND), mapping=mapping, chunk_size=chunk_size)
    started = time.perf_counter()
    await execute(spec, _Quiet(), connectors=REGISTRY, connect_timeout=5)
    return time.perf_counter() - started


async def run(source_dsn: str, target_dsn: str, rows: int, chunk_size: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path = folder / "bench.csv"
        await prepare(source_dsn, target_dsn, rows)
        psql(source_dsn, f"\\copy {SOURCE} TO '{csv_path}' WITH (FORMAT csv, HEADER)")
        size_mb = csv_path.stat().st_size / 2**20
        print(f"{rows:,} rows × 9 columns, {size_mb:.0f} MB of CSV, chunk size {chunk_size:,}, best of {repeat}")

        lines: dict[str, list[float]] = {name: [] for name in ("reference", *PATHS)}
        for _ in range(repeat):
            await truncate_target(target_dsn)
            lines["reference"].append(psql(target_dsn, f"\\copy {TARGET} FROM '{csv_path}' WITH (FORMAT csv, HEADER)"))
            assert await count(target_dsn) == rows
            for name, mapping in PATHS.items():
                await truncate_target(target_dsn)
                lines[name].append(await time_engine(folder, target_dsn, chunk_size, mapping))
                assert await count(target_dsn) == rows
        ref = min(lines["reference"])
        print(f"  {REFERENCE:<44} {ref:7.2f} s  {rows / ref:10,.0f} rows/s")
        for name in PATHS:
            ours = min(lines[name])
            print(f"  {name:<44} {ours:7.2f} s  {rows / ours:10,.0f} rows/s  ratio {ours / ref:5.2f}×")
        print(f"  peak RSS of this process {peak_rss_mb():.0f} MB")


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

"""`INSERT … ON CONFLICT DO UPDATE` against `MERGE` for the changed-rows upsert, on the server alone.

    .venv/bin/python -m bench.upsert_statements            # 1,000,000 rows, 50,000 per merge, twice each

A target of `--rows` rows; each chunk of `--chunk` rows, every one changed, is loaded into a temporary stage
and merged by each statement in its own transaction (only the merges are timed). The upsert target uses the
first (`service/connectors/postgresql/upsert.py`); docs/performance.md has the numbers.
"""

import argparse
import asyncio
import time

import asyncpg

from tests.support.databases import fresh_database

DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, qty integer, price numeric(12,2), ratio double precision,
    label text, created_at timestamptz, day date, active boolean, attrs jsonb)"""
FILL = """INSERT INTO {t} SELECT g, g % 1000 + {d}, (g % 100000) / 100.0, g / 7.0, 'item-' || g || '-' || md5(g::text),
    '2024-01-01'::timestamptz + g * interval '1 second', '2024-01-01'::date + (g % 3650), g % 3 = 0,
    jsonb_build_object('g', g, 'tag', 't' || (g % 10)) FROM generate_series({a}, {b}) g"""
COLUMNS = ["id", "qty", "price", "ratio", "label", "created_at", "day", "active", "attrs"]
VALUES = COLUMNS[1:]
COLS = ", ".join(COLUMNS)



def _of(alias: str, columns: list[str]) -> str:
    return ", ".join(f"{alias}.{c}" for c in columns)


ON_CONFLICT = (
    f"INSERT INTO tgt AS t ({COLS}) SELECT {COLS} FROM stage ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in VALUES)
    + f" WHERE ({_of('t', VALUES)}) IS DISTINCT FROM ({_of('excluded', VALUES)})"
)
MERGE = (
    f"MERGE INTO tgt AS t USING stage AS s ON t.id = s.id "
    f"WHEN MATCHED AND ({_of('t', VALUES)}) IS DISTINCT FROM ({_of('s', VALUES)}) "
    f"THEN UPDATE SET {', '.join(f'{c} = s.{c}' for c in VALUES)} "
    f"WHEN NOT MATCHED THEN INSERT ({COLS}) VALUES ({_of('s', COLUMNS)})"
)


async def merges(dsn: str, sql: str, rows: int, chunk: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS tgt; {DDL.format(t='tgt')}")
        await conn.execute(FILL.format(t="tgt", d=0, a=1, b=rows))
        await conn.execute("VACUUM ANALYZE tgt")
        await conn.execute("CHECKPOINT")
        await conn.execute("CREATE TEMP TABLE stage (LIKE tgt)")
        total = 0.0
        for first in range(1, rows + 1, chunk):
            await conn.execute("TRUNCATE stage")
            await conn.execute(FILL.format(t="stage", d=1, a=first, b=min(first + chunk - 1, rows)))
            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute(sql)
            total += time.perf_counter() - started
        return total
    finally:
        await conn.close()


async def main(dsn: str, rows: int, chunk: int, repeat: int) -> None:
    for _ in range(repeat):
        for name, sql in (("INSERT … ON CONFLICT", ON_CONFLICT), ("MERGE", MERGE)):
            print(f"{name:<22}{await merges(dsn, sql, rows, chunk):8.2f} s of merges")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with fresh_database("bs_bench_merge") as database:
        asyncio.run(main(database, args.rows, args.chunk, args.repeat))

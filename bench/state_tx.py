"""What one state-store transaction costs through each layer: why the statements of every sync use the driver.

    .venv/bin/python -m bench.state_tx            # 300 transactions each, twice, in turn

The same trivial transaction (`BEGIN`, a one-row `UPDATE … RETURNING` that finds no row, `COMMIT`) through an
ORM session, through Core on a pooled connection, through asyncpg on a connection of the same pool
(`service/db/driver.py`) and through asyncpg on a connection of its own (the reference).
"""

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import func, update

from service.db import driver
from service.db.engine import make_engine, make_sessionmaker
from service.db.models import Run
from tests.support.databases import migrated_database

SQL = ("UPDATE runs SET finishing_at = coalesce(finishing_at, clock_timestamp()) "
       "WHERE id = $1 AND owner = $2 AND cancel_requested_by IS NULL RETURNING id")


async def _measure(dsn: str, count: int) -> None:
    engine = make_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    sessions = make_sessionmaker(engine)
    run_id = uuid.uuid4()
    own = await asyncpg.connect(dsn)

    async def orm() -> None:
        async with sessions.begin() as session:
            await session.execute(
                update(Run).where(Run.id == run_id, Run.owner == "w", Run.cancel_requested_by.is_(None))
                .values(finishing_at=func.coalesce(Run.finishing_at, func.clock_timestamp())).returning(Run.id))

    async def core() -> None:
        table = Run.__table__
        async with engine.begin() as conn:
            await conn.execute(update(table).where(table.c.id == run_id, table.c.owner == "w")
                               .values(finishing_at=func.clock_timestamp()).returning(table.c.id))

    async def pooled_driver() -> None:
        async with driver.transaction(sessions) as conn:
            await conn.fetchval(SQL, run_id, "w")

    async def own_driver() -> None:
        async with own.transaction():
            await own.fetchval(SQL, run_id, "w")

    ways: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("ORM session", orm), ("Core, pooled connection", core),
        ("asyncpg, pooled connection (driver.py)", pooled_driver), ("asyncpg, own connection (reference)", own_driver)]
    try:
        for _ in range(2):
            for name, way in ways:
                for _ in range(20):
                    await way()
                timings = []
                for _ in range(count):
                    started = time.perf_counter()
                    await way()
                    timings.append((time.perf_counter() - started) * 1000)
                print(f"  {name:<42} p50 {statistics.median(timings):5.2f} ms")
    finally:
        await own.close()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    with migrated_database("bs_state_tx") as dsn:
        asyncio.run(_measure(dsn, args.count))


if __name__ == "__main__":
    main()

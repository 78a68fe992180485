"""Test-data builders: source/target tables in real PostgreSQL, and connections and batches via the API."""

import uuid

import asyncpg

ORDERS_COLUMNS = """
    id bigint PRIMARY KEY,
    customer text NOT NULL,
    amount numeric(12,2),
    quantity integer,
    paid boolean,
    created_at timestamptz,
    note text,
    tags jsonb,
    ratio double precision
"""


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def create_orders(dsn: str, table: str, rows: int, *, start: int = 1) -> None:
    """An orders table with `rows` rows of mixed types (unicode, NULLs, decimals, JSON)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({ORDERS_COLUMNS})')
        if rows:
            await conn.execute(f"""
                INSERT INTO "{table}"
                SELECT g, '客户-' || g, (g % 1000) * 1.25, g % 17, g % 2 = 0,
                       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute',
                       CASE WHEN g % 5 = 0 THEN NULL ELSE repeat('备注', g % 7) END,
                       jsonb_build_object('n', g), g / 7.0
                FROM generate_series({start}, {start + rows - 1}) AS g
            """)
    finally:
        await conn.close()


async def create_empty_like_orders(dsn: str, table: str) -> None:
    await create_orders(dsn, table, 0)


async def table_fingerprint(dsn: str, table: str) -> tuple[int, str | None]:
    """Row count and an order-independent checksum of the whole table's text form."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            f'SELECT count(*) AS n, md5(string_agg(t::text, \'|\' ORDER BY t.id)) AS sum FROM "{table}" t'
        )
        return int(row["n"]), row["sum"]
    finally:
        await conn.close()


async def count_duplicates(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f'SELECT count(*) - count(DISTINCT id) FROM "{table}"'))
    finally:
        await conn.close()


async def state_batch(sessions) -> int:
    """A batch row (and its connection) straight in the state store, for tests of the run lifecycle."""
    from service.db.models import Batch, Connection

    async with sessions.begin() as session:
        connection = Connection(name=unique("c"), type="postgresql", url="postgresql://x/y", params={}, options={})
        session.add(connection)
        await session.flush()
        batch = Batch(name="b", source_connection_id=connection.id, source={"table": "t"},
                      target_connection_id=connection.id, target={"table": "t", "mode": "append"})
        session.add(batch)
        await session.flush()
        return batch.id

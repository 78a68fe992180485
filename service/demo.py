"""Demo data for `batchsync up --demo`: a 100,000-row `orders` source, an empty target, two connections and a batch.

Every step is idempotent (create-if-missing, upsert by name), so restarting `up --demo` never duplicates
rows or batches; connection URLs are refreshed in case the embedded server moved to another port (the
embedded servers keep theirs across restarts; they move only when their port file is deleted).

The demo connections log in as `batchsync_demo`, an ordinary role that owns the two demo databases and
nothing else, with a random password kept in `<data_dir>/demo_password` (0600): an operator who may use or
edit them must not hold the superuser of the server that also keeps the state database (docs/spec.md §7).
"""

from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy import select
from sqlalchemy.engine import make_url

from service.catalog.connections import put_named
from service.config import Settings
from service.db.engine import make_engine, make_sessionmaker
from service.db.models import Batch
from service.security.key_files import key_file
from service.security.policy import AccessPolicy

SOURCE_DB = "demo_source"
TARGET_DB = "demo_target"
SOURCE_CONNECTION = "demo-source"
TARGET_CONNECTION = "demo-target"
BATCH_NAME = "demo-orders"
ORDER_COUNT = 100_000
DEMO_ROLE = "batchsync_demo"
DEMO_PASSWORD_FILE = "demo_password"
ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"

ORDERS_DDL = """
CREATE TABLE IF NOT EXISTS orders (
    id integer PRIMARY KEY,
    customer text NOT NULL,
    amount numeric(12, 2) NOT NULL,
    quantity integer NOT NULL,
    weight_kg double precision,
    paid boolean NOT NULL,
    status varchar(20) NOT NULL,
    order_date date NOT NULL,
    created_at timestamptz NOT NULL
)"""

FILL_ORDERS = """
INSERT INTO orders (id, customer, amount, quantity, weight_kg, paid, status, order_date, created_at)
SELECT g,
       'customer-' || (g % 997),
       round(((g * 7919) % 100000) / 100.0, 2),
       1 + g % 9,
       CASE WHEN g % 13 = 0 THEN NULL ELSE (g % 5000) / 100.0 END,
       g % 3 <> 0,
       (ARRAY['NEW', 'PAID', 'SHIPPED', 'DELIVERED', 'RETURNED'])[1 + g % 5],
       DATE '2024-01-01' + (g % 730),
       TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '7 minutes'
FROM generate_series(1, $1::int) AS g
ON CONFLICT (id) DO NOTHING"""


@dataclass(frozen=True)
class DemoInfo:
    batch_id: int
    source_url: str
    target_url: str


def database_url(settings: Settings, database: str, role: tuple[str, str] | None = None) -> str:
    """The plain `postgresql://` URL of another database on the state store's server, as `role` if given."""
    url = make_url(settings.database_url or "").set(drivername="postgresql", database=database)
    if role is not None:
        url = url.set(username=role[0], password=role[1])
    return url.render_as_string(hide_password=False)


def demo_password(settings: Settings) -> str:
    """The demo role's password, created on first use and kept across restarts."""
    secret = key_file(Path(settings.data_dir) / DEMO_PASSWORD_FILE, create=True)
    assert secret is not None  # created above
    return secret.get_secret_value()


async def _ensure_role(settings: Settings, password: str) -> None:
    """The demo role, ordinary and with our password; the state database closed to every role but its owner."""
    conn = await asyncpg.connect(database_url(settings, "postgres"))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", DEMO_ROLE):
            await conn.execute(f'CREATE ROLE "{DEMO_ROLE}" {ROLE_ATTRIBUTES}')
        alter = await conn.fetchval(f"SELECT format('ALTER ROLE %I {ROLE_ATTRIBUTES} PASSWORD %L', $1::text, $2::text)",
                                    DEMO_ROLE, password)
        await conn.execute("SET log_statement = 'none'")
        await conn.execute(alter)
        state = make_url(settings.database_url or "").database
        await conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{state}" FROM PUBLIC')
    finally:
        await conn.close()


async def _ensure_database(settings: Settings, name: str) -> None:
    """The database, owned by the demo role; one made by an earlier version (owned by the superuser) is handed
    over with its `orders` table."""
    conn = await asyncpg.connect(database_url(settings, "postgres"))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}" OWNER "{DEMO_ROLE}"')
            return
        await conn.execute(f'ALTER DATABASE "{name}" OWNER TO "{DEMO_ROLE}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(database_url(settings, name))
    try:
        await conn.execute(f'ALTER TABLE IF EXISTS public.orders OWNER TO "{DEMO_ROLE}"')
    finally:
        await conn.close()


async def _ensure_orders(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(ORDERS_DDL)
        if rows and await conn.fetchval("SELECT count(*) FROM orders") < rows:
            await conn.execute(FILL_ORDERS, rows)
            await conn.execute("ANALYZE orders")
    finally:
        await conn.close()


async def _ensure_catalog(settings: Settings, source_url: str, target_url: str) -> int:
    engine = make_engine(settings.database_url or "", settings.connect_timeout_seconds, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            ids = {}
            for name, url in ((SOURCE_CONNECTION, source_url), (TARGET_CONNECTION, target_url)):
                ids[name] = await put_named(session, name, "postgresql", url, AccessPolicy.from_settings(settings))
            batch_id = await session.scalar(
                select(Batch.id).where(Batch.name == BATCH_NAME,
                                       Batch.source_connection_id == ids[SOURCE_CONNECTION]).limit(1)
            )
            if batch_id is None:
                batch = Batch(
                    name=BATCH_NAME,
                    source_connection_id=ids[SOURCE_CONNECTION],
                    source={"table": "orders"},
                    target_connection_id=ids[TARGET_CONNECTION],
                    target={"table": "orders", "mode": "overwrite"},
                )
                session.add(batch)
                await session.flush()
                batch_id = batch.id
            return int(batch_id)
    finally:
        await engine.dispose()


async def seed_demo(settings: Settings, rows: int = ORDER_COUNT, source_db: str = SOURCE_DB,
                    target_db: str = TARGET_DB) -> DemoInfo:
    """Create (or find) the demo role, databases, tables, connections and batch on the state store's server."""
    role = (DEMO_ROLE, demo_password(settings))
    await _ensure_role(settings, role[1])
    for name in (source_db, target_db):
        await _ensure_database(settings, name)
    source_url, target_url = database_url(settings, source_db, role), database_url(settings, target_db, role)
    await _ensure_orders(source_url, rows)
    await _ensure_orders(target_url, 0)
    batch_id = await _ensure_catalog(settings, source_url, target_url)
    return DemoInfo(batch_id=batch_id, source_url=source_url, target_url=target_url)

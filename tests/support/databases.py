"""Real PostgreSQL databases for tests: a fresh database per use, dropped afterwards."""

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

from tests.support.sql import execute

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def dsn_for(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


async def _admin(sql: str) -> None:
    await execute(ADMIN_DSN, sql)


@contextlib.contextmanager
def fresh_database(prefix: str = "bs_test") -> Iterator[str]:
    """Yield the DSN of a new empty database; drop it (forcefully) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield dsn_for(name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def migrated_database(prefix: str = "bs_test") -> Iterator[str]:
    """Yield the DSN of a new database at the latest schema (the state store of a test of its own)."""
    from service.db.migrate import upgrade

    with fresh_database(prefix) as dsn:
        upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        yield dsn

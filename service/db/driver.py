"""State-store transactions through asyncpg itself, on a connection of the engine's own pool: for the
statements every sync makes (the API's request, the worker's admission, claim and spec, the cancel gate
before it publishes, its completion, its replies' marks). The rest of the service keeps the ORM.

An ORM session costs about 3 ms of Python per transaction on the development machine, Core on a connection
1.3 ms, the driver on a pooled connection 0.6 ms (docs/performance.md, "third round"); a sync makes five.
The connection is checked out of the same pool (its size, timeouts, idle ping), so nothing else changes:
values cross as the SQLAlchemy dialect's codecs leave them, json and jsonb go in as JSON text and come out
decoded. A connection that failed at the connection level, or whose block was cancelled or broke the driver's
protocol (it may be mid-statement), is invalidated, so the pool never hands it out again; an error the server
reported (a constraint, a bad value) leaves it healthy.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.db.failures import database_down
from service.db.models import Base

M = TypeVar("M", bound=Base)


def columns(model: type[Base], alias: str | None = None) -> str:
    """Every column of `model`'s table, as a driver statement's select list (each after `alias.` when given)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{column.name}" for column in model.__table__.columns)


def detached(model: type[M], row: Mapping[str, Any]) -> M:
    """A detached `model` object from a driver row that holds its columns (and maybe others, left out), so the
    code that decides reads it as it reads what the ORM loads."""
    return model(**{column.name: row[column.name] for column in model.__table__.columns})


def engine_of(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    bind = sessions.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise TypeError("the session factory is not bound to an AsyncEngine")
    return bind


@contextlib.asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection inside a transaction that commits when the block ends and rolls back when it raises."""
    async with engine_of(sessions).connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        if driver is None:
            raise RuntimeError("the pooled connection has no driver connection")
        try:
            async with driver.transaction():
                yield driver
        except BaseException as error:
            if database_down(error) or isinstance(error, (asyncio.CancelledError, asyncpg.InterfaceError)):
                await connection.invalidate()
            raise

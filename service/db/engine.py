"""Async engine and session factory; built by the composition root, never at import.

`hide_parameters`: a failed statement's message (logged, or shown in a traceback) never carries its
bound values, which may be connection rows.

A pooled connection is pinged before use only when it has been idle for `PING_AFTER_IDLE_SECONDS`:
`pool_pre_ping` pings at every checkout, three round trips (BEGIN, `;`, ROLLBACK) before each of the five
state-store transactions of a small sync, about a fifth of its round trip on this machine
(docs/performance.md). A connection used a moment ago is alive or fails its statement like any other
fault, which the runs' transient retry and the API's 503 already handle; one idle for longer (a restarted
database, a dropped NAT entry) is checked and replaced before it is used.
"""

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

PING_AFTER_IDLE_SECONDS = 2.0


def make_engine(url: str, connect_timeout: float = 5.0, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=connect_timeout,
        connect_args={"timeout": connect_timeout, "command_timeout": 60},
        hide_parameters=True,
    )
    event.listen(engine.sync_engine, "checkin", _idle_from_now)
    event.listen(engine.sync_engine, "checkout", _ping_when_idle)
    return engine


def _idle_from_now(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_when_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
    """Runs inside the pool's checkout (under SQLAlchemy's greenlet, so the adapter's sync `ping` may
    await). DisconnectionError makes the pool discard this connection and check out another."""
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as exc:
        raise DisconnectionError(f"idle state-store connection failed its ping: {type(exc).__name__}") from exc


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)

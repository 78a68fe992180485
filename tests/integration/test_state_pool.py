"""The state store's pool pings a connection only after it sat idle (service/db/engine.py): a connection
the server dropped while idle is replaced before a transaction uses it, and a busy one costs no ping."""

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from service.db import engine as engine_module
from service.db.engine import make_engine


async def _backend_pid(engine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_dropped_while_idle_is_replaced_before_use(state_dsn, monkeypatch):
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    engine = make_engine(state_dsn.replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=1)
    try:
        first = await _backend_pid(engine)
        admin = await asyncpg.connect(state_dsn)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        second = await _backend_pid(engine)  # would raise without the ping: the pooled connection is dead
        assert second != first
    finally:
        await engine.dispose()


@pytest.mark.parametrize(("idle_seconds", "pings"), [(60.0, 0), (0.0, 1)])
async def test_a_connection_used_a_moment_ago_is_not_pinged(state_dsn, monkeypatch, idle_seconds, pings):
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", idle_seconds)
    counted: list[None] = []
    original = AsyncAdapt_asyncpg_connection.ping

    def counting_ping(self):
        counted.append(None)
        return original(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counting_ping)
    engine = make_engine(state_dsn.replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=1)
    try:
        first = await _backend_pid(engine)
        assert counted == []  # a new connection is never pinged
        assert await _backend_pid(engine) == first
        assert len(counted) == pings
    finally:
        await engine.dispose()

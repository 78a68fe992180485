"""Helpers for the scheduler, retry-policy and notification tests: waiting for what the projector or the worker
will have done, and the runs a batch has (SQL helpers: tests/support/sql.py)."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from tests.support.sql import fetch


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 30, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; its last answer on timeout is in the error."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"not within {within}s: last {result!r}")
        await asyncio.sleep(every)


async def runs_of(dsn: str, batch_id: int) -> list[asyncpg.Record]:
    return await fetch(dsn, "SELECT id, request_id, trigger, requested_by, status, error_code, resumed_from_run_id "
                            "FROM runs WHERE batch_id = $1 ORDER BY created_at", batch_id)


FINISHED = ("SUCCESS", "FAILED", "CANCELLED")


def all_finished(runs: list[asyncpg.Record]) -> bool:
    return bool(runs) and all(r["status"] in FINISHED for r in runs)


async def all_terminal(dsn: str, batch_id: int) -> bool:
    return all_finished(await runs_of(dsn, batch_id))

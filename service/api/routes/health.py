"""Liveness and readiness probes, open to all: `/healthz` always answers; `/readyz` checks the database and
the broker and answers within its own timeout.

Each check runs in a task of its own and the answer goes out at the deadline, whatever the late checks are
still doing: a cancelled check may take longer to clean up than to fail. SQLAlchemy closes a connection
it gave up on gracefully, shielded from cancellation, for up to 2 s more (asyncpg `close(timeout=2)`), so a
database that stopped answering on a pooled connection made `async with asyncio.timeout(2)` return after
4 s. A late check finishes its clean-up in the background.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from schemas.envelope import Envelope
from schemas.messages import BROKER, DATABASE, OK, unavailable, unavailable_parts
from service.api.deps import StateDep
from service.api.errors import envelope
from service.api.openapi import answers
from service.api.state import AppState

router = APIRouter(tags=["health"])

READY_TIMEOUT_SECONDS: Final = 2.0
BrokerCheck = Callable[[], Awaitable[None]]
"""Whether the app's request-reply works (reply listener connected, a metadata request answered on its
producer's connection); raises when it does not."""
BROKER_CHECK: Final = "broker_check"
"""Where `create_app` keeps the app's BrokerCheck in `app.state`."""
PARTS: Final = {"database": DATABASE, "broker": BROKER}
"""Each readiness check by its key in the answer, with the word naming it in `服务暂不可用：<part>`."""

_late: set[asyncio.Task[None]] = set()
"""Checks still cleaning up after their answer was given; kept referenced until they end."""


@router.get("/healthz", response_model=Envelope[dict[str, Any]], summary="Liveness",
            description="Answers `{\"status\": \"UP\"}` while the process serves requests. Open to all.")
async def healthz() -> Envelope[dict[str, Any]]:
    return Envelope(data={"status": "UP"})


@router.get("/readyz", response_model=Envelope[dict[str, Any]], summary="Readiness",
            description=f"Checks the state database (`SELECT 1`) and the broker (reply listener connected, a "
                        f"metadata request answered): 200 when "
                        f"both answer, 503 `{unavailable(DATABASE)}` or `{unavailable(BROKER)}` (both named when "
                        f"both are down) within {READY_TIMEOUT_SECONDS:g} s when one does not. Open to all.",
            responses=answers(503))
async def readyz(state: StateDep, request: Request) -> JSONResponse:
    """503 within the timeout naming what is down, so an orchestrator can route around us."""
    checks: dict[str, BrokerCheck] = {"database": lambda: _database(state)}
    broker = getattr(request.app.state, BROKER_CHECK, None)
    if callable(broker):
        checks["broker"] = broker
    found = await _within(READY_TIMEOUT_SECONDS, checks)
    down = [name for name, up in found.items() if not up]
    if down:  # an error envelope like every 503: the message names the parts
        return envelope(503, unavailable_parts(*(PARTS[name] for name in down)))
    return envelope(200, OK, {"status": "UP"} | dict.fromkeys(found, "UP"))


async def _database(state: AppState) -> None:
    async with state.sessions() as session:
        await session.execute(text("SELECT 1"))


async def _within(timeout: float, checks: dict[str, Callable[[], Awaitable[None]]]) -> dict[str, bool]:
    """Run the checks side by side; True for each that returned within `timeout`, without waiting for the
    others to finish being cancelled."""

    async def run(check: Callable[[], Awaitable[None]]) -> None:
        await check()

    tasks = {name: asyncio.create_task(run(check), name=f"readyz-{name}") for name, check in checks.items()}
    await asyncio.wait(tasks.values(), timeout=timeout)
    found = {}
    for name, task in tasks.items():
        if task.done():
            found[name] = not task.cancelled() and task.exception() is None
        else:
            found[name] = False
            task.cancel()
            _late.add(task)
            task.add_done_callback(_forget)
    return found


def _forget(task: asyncio.Task[None]) -> None:
    _late.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not report it as never retrieved

"""Liveness and readiness probes, open to all: `/healthz` always answers; `/readyz` checks the database."""

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from schemas.envelope import Envelope
from schemas.messages import DATABASE, DATABASE_DOWN, OK, unavailable
from service.api.deps import StateDep
from service.api.errors import envelope
from service.api.openapi import answers

router = APIRouter(tags=["health"])

READY_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", response_model=Envelope[dict[str, Any]], summary="Liveness",
            description="Answers `{\"status\": \"UP\"}` while the process serves requests. Open to all.")
async def healthz() -> Envelope[dict[str, Any]]:
    return Envelope(data={"status": "UP"})


@router.get("/readyz", response_model=Envelope[dict[str, Any]], summary="Readiness",
            description=f"Checks the state database: 200 when it answers, 503 `{unavailable(DATABASE)}` within "
                        f"{READY_TIMEOUT_SECONDS:g} s when it does not. Open to all.",
            responses=answers(503))
async def readyz(state: StateDep) -> JSONResponse:
    """503 within the timeout when the database does not answer, so an orchestrator can route around us."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), state.sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception:
        return envelope(503, DATABASE_DOWN)
    return envelope(200, OK, {"status": "UP", "database": "UP"})

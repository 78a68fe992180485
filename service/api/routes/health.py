"""Liveness and readiness probes, open to all: `/healthz` always answers; `/readyz` checks the database."""

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from schemas.envelope import Envelope
from schemas.messages import DATABASE_DOWN, OK
from service.api.deps import StateDep
from service.api.errors import envelope

router = APIRouter(tags=["health"])

READY_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", response_model=Envelope[dict[str, Any]])
async def healthz() -> Envelope[dict[str, Any]]:
    return Envelope(data={"status": "UP"})


@router.get("/readyz", response_model=Envelope[dict[str, Any]])
async def readyz(state: StateDep) -> JSONResponse:
    """503 within the timeout when the database does not answer, so an orchestrator can route around us."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), state.sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception:
        return envelope(503, DATABASE_DOWN)
    return envelope(200, OK, {"status": "UP", "database": "UP"})

"""The app factory: routes, envelope error handlers and the state the composition root built.

Nothing is created here; the caller owns the engine, sessions and requester and their lifecycle.
The state is reachable as `app.state.batchsync`. The RequestGuard runs before routing: body limit
and authentication come before any body is read (see service/api/middleware.py).
"""

from typing import Any

from fastapi import FastAPI

from service.api import errors
from service.api.middleware import RequestGuard
from service.api.routes import batches, connections, health, runs
from service.api.state import AppState
from service.connectors.registry import KINDS

__all__ = ["AppState", "create_app"]


def create_app(state: AppState) -> FastAPI:
    app = FastAPI(
        title="batchsync",
        summary="Syncs data batches from source to target systems, driven by events.",
        version="0.1.0",
    )
    app.state.batchsync = state
    errors.install(app)
    app.add_middleware(RequestGuard, settings=state.settings)
    app.include_router(health.router)
    app.include_router(connections.router)
    app.include_router(batches.router)
    app.include_router(runs.router)
    _publish_connection_types(app, sorted(KINDS))
    return app


def _publish_connection_types(app: FastAPI, kinds: list[str]) -> None:
    """The OpenAPI document lists the registered connector kinds as the enum of a connection's `type`:
    the wire model only constrains the spelling, the registry knows which systems exist."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for model in ("ConnectionIn", "ConnectionOut"):
                schema["components"]["schemas"][model]["properties"]["type"]["enum"] = kinds
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema

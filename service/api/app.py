"""The app factory: routes, envelope error handlers and the state the composition root built.

Nothing is created here; the caller owns the engine, sessions and requester and their lifecycle.
The state is reachable as `app.state.batchsync`. The RequestGuard runs before routing: body limit
and authentication come before any body is read (see service/api/middleware.py).
"""

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from service.api import docs, errors, openapi
from service.api.middleware import RequestGuard
from service.api.routes import batches, connections, health, runs, stream
from service.api.routes.health import BROKER_CHECK, BrokerCheck
from service.api.routes.metrics import router as metrics_router
from service.api.state import AppState
from service.connectors.registry import KINDS
from service.console import router as console
from service.observability.http import ObservedRequests

__all__ = ["AppState", "create_app"]


def create_app(state: AppState, broker_check: BrokerCheck | None = None) -> FastAPI:
    """`broker_check` is what `/readyz` asks of the broker (a metadata request); without one it checks the
    database alone."""
    app = FastAPIOffline(  # /docs from the package's own Swagger UI files, no CDN; /redoc in service/api/docs.py
        redoc_url=None,
        static_url=docs.DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},
        title="batchsync",
        summary="Syncs data batches from source to target systems, driven by events.",
        version="0.1.0",
    )
    app.state.batchsync = state
    setattr(app.state, BROKER_CHECK, broker_check)
    errors.install(app)
    app.add_middleware(RequestGuard, settings=state.settings)
    app.add_middleware(ObservedRequests, routes=app.router.routes)  # outermost: sees the guard's refusals
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(connections.router)
    app.include_router(batches.router)
    app.include_router(runs.router)
    app.include_router(runs.across)
    app.include_router(stream.router)
    app.include_router(console.router)
    app.include_router(docs.router)
    openapi.publish(app, sorted(KINDS))
    return app


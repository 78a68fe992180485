"""Every HTTP request as an operator sees it: a server span, two metrics and one access-log line.

The span continues the caller's `traceparent`. FastAPI releases with native OpenTelemetry open the server
span themselves once a tracer provider is installed; this middleware then runs inside that span and opens
none of its own, so a request is one span either way. Without a provider its span is a non-recording one
that still hands the caller's context on to the records the request publishes.

The outermost middleware, so refusals of the request guard (401, 413) are counted and logged too. The
route label is the route's template (`/integration/batch/{batch_id}/sync`), never the path a client sent,
so a scanner cannot grow the metric without bound. The access line carries the path without its query
string (a query may carry a secret), and never a header: tokens stay out of the log. Probes (`/healthz`,
`/readyz`, `/metrics`) are logged at DEBUG, so a scraper every few seconds does not bury the rest.
"""

import contextlib
import logging
import time
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from service.observability import metrics
from service.observability.logs import ACCESS_LOGGER
from service.observability.tracing import active, continued, from_http, tracer

access = logging.getLogger(ACCESS_LOGGER)

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PROBES: Final = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED: Final = "unmatched"


class ObservedRequests:
    """Pure ASGI (no buffering, no extra task); `routes` names the template of a request refused before
    routing."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        status = 500

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with self._server_span(scope, method) as span:
            try:
                await self.app(scope, receive, tracked)
            finally:
                route = self._route(scope)
                elapsed = time.perf_counter() - started
                if span is not None and span.is_recording():
                    span.update_name(f"{method} {route}")
                    span.set_attributes({"http.request.method": method, "http.route": route,
                                         "http.response.status_code": status})
                    if status >= 500:
                        span.set_status(StatusCode.ERROR)
                metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
                metrics.HTTP_DURATION.labels(method, route).observe(elapsed)
                self._log(scope, method, status, elapsed)

    @staticmethod
    def _server_span(scope: Scope, method: str) -> AbstractContextManager[Span | None]:
        """Ours, unless the framework already opened a recording server span around us; without a tracer
        provider only the caller's context, so what the request publishes carries it on."""
        if trace.get_current_span().is_recording():
            return contextlib.nullcontext()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())
                   if k in (b"traceparent", b"tracestate")}
        if not active():
            return _no_span(continued(from_http(headers)))
        return tracer.start_as_current_span(method, context=from_http(headers), kind=SpanKind.SERVER)

    def _route(self, scope: Scope) -> str:
        """The template of the route that served the request, or would have served one refused before
        routing (401, 413); `unmatched` when none matches."""
        route = scope.get("route")
        if route is None:
            route = next((r for r in _leaves(self.routes) if r.matches(scope)[0] is Match.FULL), None)
        path = getattr(route, "path", None)
        return path if isinstance(path, str) else UNMATCHED

    @staticmethod
    def _log(scope: Scope, method: str, status: int, elapsed: float) -> None:
        path: str = scope["path"]  # decoded: `%0a` is a newline here, which must not start a forged log line
        path = path if path.isprintable() else path.encode("unicode_escape").decode("ascii")
        level = logging.DEBUG if path in PROBES and status < 500 else logging.INFO
        if not access.isEnabledFor(level):
            return
        principal = scope.get("state", {}).get("principal")
        client = scope.get("client")
        access.log(level, "%s %s %d %.1fms", method, path, status, elapsed * 1000, extra={
            "method": method, "path": path, "status": status, "durationMs": round(elapsed * 1000, 1),
            "client": client[0] if client else None, "user": getattr(principal, "sub", None)})


@contextlib.contextmanager
def _no_span(inner: AbstractContextManager[None]) -> Iterator[Span | None]:
    with inner:
        yield None


def _leaves(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes themselves: recent FastAPI keeps an included router whole (its `original_router`)."""
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if isinstance(inner, list):
            yield from _leaves(inner)
        else:
            yield route

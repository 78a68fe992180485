"""The request guard: the checks every request passes before any route reads its body.

FastAPI reads and parses a body before it solves a route's dependencies, so a permission check in a
dependency comes too late to protect memory: an anonymous 100 MB body would be parsed first. This
pure ASGI middleware therefore, in order and without touching the body:

1. refuses a path or query string that carries a NUL character (400; PostgreSQL cannot store one);
2. answers 401 on every route outside `OPEN_PATHS` unless the bearer token verifies (signature,
   expiry, maximum lifetime), telling why in `data.reason` and `WWW-Authenticate` (never the token);
   the verified `Principal` is left in the request state, where the
   route dependencies check permissions against it;
3. answers 413 when `Content-Length` exceeds `max_body_bytes`, and counts the bytes of a chunked
   body as the app receives them, stopping at the limit.

It is not a `BaseHTTPMiddleware`, which would buffer and run the app in another task. Other scope
types (lifespan, websocket) pass through untouched; a route there that uses `require` still fails
closed, since only this guard puts a Principal in the state.
"""

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.messages import AUTH_FAILED, BODY_TOO_LARGE, CONTENT_LENGTH_INVALID, ILLEGAL_PATH_CHARACTERS, bad_request
from service.api.errors import envelope
from service.auth import AuthFailed, Principal, unauthorized, verify_token
from service.config import Settings

OPEN_PATHS = ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/console", "/metrics")
"""Routes anyone may call; each also opens what lies under it (`/docs/…`, `/console/app.js`)."""

PRINCIPAL = "principal"
"""The key of the verified Principal in the request state (`request.state.principal`)."""


def is_open(path: str) -> bool:
    """`/` is open too (it only redirects to the console), but not what lies under it."""
    return path == "/" or any(path == root or path.startswith(root + "/") for root in OPEN_PATHS)


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; FastAPI re-raises HTTPExceptions
    unchanged while it reads a body, so this reaches the envelope handlers as a 413."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail=BODY_TOO_LARGE, headers={"Connection": "close"})


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return (path[len(root):] or "/") if root and path.startswith(root) else path


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _has_nul(scope: Scope) -> bool:
    """NUL in the decoded path or anywhere in the percent-decoded query string."""
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(query.replace(b"+", b" "))


def _bearer(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length header as a number; -1 when it is present but not a non-negative integer."""
    value = _header(scope, b"content-length")
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else -1


def _refuse(scope: Scope, status: int, message: str, headers: dict[str, str] | None = None,
            data: object = None) -> ASGIApp:
    """An envelope answer sent without reading the body; when a body is on its way the connection is
    closed after the answer, so the server need not drain it to find the next request."""
    headers = dict(headers or {})
    if _header(scope, b"transfer-encoding") is not None or (_declared_length(scope) or 0) != 0:
        headers["Connection"] = "close"
    return envelope(status, message, data, headers=headers)


class RequestGuard:
    """Pure ASGI: NUL check, authentication, body limit; see the module docstring for why here."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._check(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._limited(scope, receive, send, self.settings.max_body_bytes)

    def _check(self, scope: Scope) -> ASGIApp | None:
        """The refusal for this request, or None to let it through (with its Principal in the state)."""
        if _has_nul(scope):
            return _refuse(scope, 400, bad_request(ILLEGAL_PATH_CHARACTERS))
        if not is_open(_route_path(scope)):
            principal = self._authenticate(scope)
            if isinstance(principal, AuthFailed):
                data, headers = unauthorized(principal)
                return _refuse(scope, 401, AUTH_FAILED, headers, data)
            scope.setdefault("state", {})[PRINCIPAL] = principal
        length = _declared_length(scope)
        if length is not None and length < 0:
            return _refuse(scope, 400, bad_request(CONTENT_LENGTH_INVALID))
        if length is not None and length > self.settings.max_body_bytes:
            return _refuse(scope, 413, BODY_TOO_LARGE)
        return None

    def _authenticate(self, scope: Scope) -> Principal | AuthFailed:
        """The verified Principal, or why there is none (the reason the 401 tells; never the token)."""
        token = _bearer(scope)
        if token is None:
            return AuthFailed("no bearer token")
        try:
            return verify_token(self.settings, token)
        except AuthFailed as failed:
            return failed

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app with a `receive` that stops at `limit` bytes; a 413 if the app let that escape."""
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(scope, 413, BODY_TOO_LARGE)(scope, receive, send)


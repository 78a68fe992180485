"""A real JSON API on loopback for the HTTP source tests: datasets served under `/api/<name>` with
page-number (`page`/`size`), offset (`offset`/`limit`), cursor (`cursor`, next in `meta.next`) and
next-link (`links.next` and a `Link` header) pagination, records nested at `data.items`, bearer or basic
auth, a scripted run of 429s with Retry-After, plain lists under `/flat/<name>` and a non-JSON answer
under `/text/<name>`. It runs in a thread of its own (stdlib `ThreadingHTTPServer`), so it answers
whatever the test's event loop is doing, and logs every request it served.
"""

import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.support.loopback import http_server

DEFAULT_PAGE = 100
TOKEN = "api-bearer-SECRET-7731"
USER, PASSWORD = "reader", "basic-SECRET-5519"


def json_value(value: Any) -> Any:
    """How a JSON API carries a value: decimals as strings, dates and datetimes RFC 3339, binary base64."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def json_record(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json_value(v) for k, v in row.items()}


@dataclass
class ApiServer:
    url: str = ""
    datasets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    auth: str | None = None
    """None, "bearer" or "basic": what every request must present."""
    throttle: int = 0
    """How many of the next requests get a 429."""
    retry_after: str = "0"
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, rows: list[dict[str, Any]]) -> str:
        self.datasets[name] = [json_record(r) for r in rows]
        return name

    def served(self, name: str) -> list[str]:
        """The query strings of the requests served for dataset `name`, in order."""
        with self.lock:
            return [r.split("?", 1)[1] if "?" in r else "" for r in self.requests if r.split("?")[0].endswith(name)]


def _page(server: ApiServer, name: str, query: dict[str, str], path: str) -> tuple[dict[str, Any], str | None]:
    records = server.datasets[name]
    size = int(query.get("size") or query.get("limit") or DEFAULT_PAGE)
    if "page" in query:
        start = (int(query["page"]) - 1) * size
    elif "offset" in query:
        start = int(query["offset"])
    elif "cursor" in query or "after" in query:
        start = int((query.get("cursor") or query["after"]).removeprefix("c"))
    else:
        start = 0
    items = records[start:start + size]
    more = start + size < len(records)
    cursor = f"c{start + size}" if more else None
    link = f"{path}?{urlencode({'after': cursor, 'size': size})}" if more else None
    body = {"data": {"items": items}, "meta": {"next": cursor, "total": len(records)}, "links": {"next": link}}
    return body, link


class _Handler(BaseHTTPRequestHandler):
    server_state: ApiServer

    def log_message(self, *_: Any) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if raw is not None else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        state, given = self.server_state, self.headers.get("Authorization", "")
        if state.auth == "bearer":
            return given == f"Bearer {TOKEN}"
        if state.auth == "basic":
            return given == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return True

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state = self.server_state
        with state.lock:
            state.requests.append(self.path)
            throttled = state.throttle > 0
            state.throttle -= 1 if throttled else 0
        if not self._authorized():
            return self._send(401, {"error": "unauthorized"})
        if throttled:
            return self._send(429, {"error": "slow down"}, {"Retry-After": state.retry_after})
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        kind, _, name = parts.path.strip("/").partition("/")
        if name not in state.datasets or kind not in ("api", "flat", "text"):
            return self._send(404, {"error": "not found"})
        if kind == "flat":
            return self._send(200, state.datasets[name])
        if kind == "text":
            return self._send(200, None, raw=b"<html>not json</html>")
        body, link = _page(state, name, query, parts.path)
        return self._send(200, body, {"Link": f'<{link}>; rel="next"'} if link else None)


@contextlib.contextmanager
def serving(state: ApiServer | None = None) -> Iterator[ApiServer]:
    """Serve `state` on a free loopback port for the duration of the block."""
    state = state or ApiServer()
    with http_server(type("Handler", (_Handler,), {"server_state": state})) as state.url:
        yield state


_SHARED: list[tuple[ApiServer, contextlib.ExitStack]] = []


def shared_server() -> ApiServer:
    """One server for the whole session (the contract cases have no teardown hook); datasets have
    unique names, so tests sharing it never see each other's data."""
    if not _SHARED:
        stack = contextlib.ExitStack()
        _SHARED.append((stack.enter_context(serving(ApiServer(auth="bearer"))), stack))
    return _SHARED[0][0]

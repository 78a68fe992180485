"""A tiny real HTTP server for the egress tests: bound to a chosen loopback address (127.0.0.2 is loopback
too, and makes a second, deniable host), it answers every GET with one scripted answer (a redirect or a
JSON body) and records each request's path and headers, so a test can prove a server got nothing."""

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback import http_server


@dataclass
class Recorder:
    url: str = ""
    location: str | None = None
    """Answer 302 to this URL; None: answer 200 with `body`."""
    body: Any = field(default_factory=list)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """(path, headers) of every request served."""


class _Handler(BaseHTTPRequestHandler):
    state: Recorder

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.state.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.state.location is not None:
            self.send_response(302)
            self.send_header("Location", self.state.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps(self.state.body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def recording(host: str = "127.0.0.1", location: str | None = None, body: Any = None) -> Iterator[Recorder]:
    """Serve a Recorder on a free port of `host` for the duration of the block."""
    state = Recorder(location=location, body=[] if body is None else body)
    with http_server(type("Handler", (_Handler,), {"state": state}), host) as state.url:
        yield state

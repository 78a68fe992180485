"""The whole service on a real loopback port, for a browser or a streaming HTTP client: API (uvicorn), worker
and projector in one background thread with its own event loop, so the test's own thread stays free to
drive Chromium synchronously."""

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from service.auth import mint_token
from service.config import Settings
from tests.support.loopback import closed_port
from tests.support.stack import SOLO, stack_settings

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass
class LiveServer:
    settings: Settings
    url: str

    def token(self, perms: list[str] | None = None, sub: str = "operator") -> str:
        return mint_token(self.settings, sub, perms or ["*:*:*"])

    def api(self, method: str, path: str, perms: list[str] | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(perms)}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)


@contextlib.contextmanager
def live_server(state_dsn: str, bootstrap: str) -> Iterator[LiveServer]:
    from service.bootstrap import run_api, run_projector, run_worker

    port = closed_port()
    settings = stack_settings(state_dsn, bootstrap, http_port=port, http_host="127.0.0.1", **SOLO)
    loop = asyncio.new_event_loop()
    tasks: list[asyncio.Task[None]] = []
    failure: list[BaseException] = []

    async def serve() -> None:
        tasks.extend(asyncio.create_task(part(settings), name=part.__name__)
                     for part in (run_api, run_worker, run_projector))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failure.extend(r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError))

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="live-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        if failure or time.monotonic() > deadline:
            raise RuntimeError(f"the live server did not start: {failure!r}")
        time.sleep(0.2)
    try:
        yield LiveServer(settings, url)
    finally:
        for task in tasks:
            loop.call_soon_threadsafe(task.cancel)
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"the live server did not stop within {STOP_TIMEOUT:g} s")
        loop.close()

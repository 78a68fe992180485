"""A bounded schemathesis run over the OpenAPI document: every operation, valid and invalid inputs, against
the real app served by uvicorn on a real (fresh) state database, with an all-permissions token.

No answer may be a 5xx, and every answer is the envelope `{code, message, data}` with `code` equal to
the HTTP status (docs/spec.md §3, §7). Sync requests never reach a broker: the requester answers "no reply
yet" at once, so the API answers 202 (or 409 for a batch already running) instead of waiting.
"""

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from sqlalchemy.ext.asyncio import async_sessionmaker

from schemas.events import BatchSyncCompleted, BatchSyncRequested
from service.api.app import AppState, create_app
from service.db.engine import make_engine, make_sessionmaker
from service.db.migrate import upgrade
from tests.support.api import api_settings, asyncpg_url, bearer
from tests.support.brokers import free_port
from tests.support.databases import fresh_database
from tests.support.loopback import closed_port

EXAMPLES_PER_OPERATION = 25
ENVELOPE_KEYS = {"code", "message", "data"}


class NoReplyYet:
    """Every sync is accepted and never answered: the API answers 202 without waiting for a worker."""

    async def request(self, event: BatchSyncRequested, timeout: float) -> BatchSyncCompleted | None:
        return None


@contextlib.contextmanager
def served(settings: Any) -> Iterator[tuple[str, Any]]:
    """The app on a loopback port, in a thread with its own event loop (the engine lives in that loop)."""
    engine = make_engine(settings.database_url, connect_timeout=2)
    app = create_app(AppState(settings, make_sessionmaker(engine), NoReplyYet()))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan="off"))

    async def serve() -> None:
        try:
            await server.serve()
        finally:
            await engine.dispose()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def seed(base_url: str) -> None:
    """Connections 1 and 2 and batch 1, so generated small ids also reach existing rows."""
    auth = bearer()
    unreachable = f"postgresql://app@127.0.0.1:{closed_port()}/nowhere"
    ids = []
    for name in ("fuzz_source", "fuzz_target"):
        response = requests.post(f"{base_url}/integration/connection", headers=auth, timeout=10,
                                 json={"name": name, "type": "postgresql", "url": unreachable})
        assert response.status_code == 200, response.text
        ids.append(response.json()["data"]["id"])
    response = requests.post(f"{base_url}/integration/batch", headers=auth, timeout=10, json={
        "name": "fuzz_batch", "sourceConnectionId": ids[0], "source": {"table": "orders"},
        "targetConnectionId": ids[1], "target": {"table": "orders_copy"}})
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[tuple[str, Any]]:
    files = tmp_path_factory.mktemp("fuzz_files")
    with fresh_database("bs_fuzz") as dsn:
        url = asyncpg_url(dsn)
        upgrade(url)
        with served(api_settings(url, connect_timeout_seconds=1, sync_wait_seconds=0,
                                 file_roots=str(files))) as (base_url, app):
            seed(base_url)
            yield base_url, app


def openapi_document() -> dict[str, Any]:
    """The document as the app publishes it at `/openapi.json`; routes only, so no database is needed."""
    return create_app(AppState(api_settings("postgresql+asyncpg://unused/none"), async_sessionmaker(),
                               NoReplyYet())).openapi()


EVENT_STREAM = "/integration/events/stream"
"""Server-sent events: an answer that never ends (tests/integration/test_event_stream.py checks that route)."""

schema = schemathesis.openapi.from_dict(openapi_document()).exclude(path=EVENT_STREAM)


def check_envelope(response: requests.Response) -> None:
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:500]}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == ENVELOPE_KEYS, f"{where}: {response.text[:500]}"
    assert body["code"] == response.status_code, f"{where}: {body}"
    assert isinstance(body["message"], str) and body["message"], f"{where}: {body}"


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_is_an_envelope_and_never_a_server_error(case, api) -> None:
    base_url, _ = api
    check_envelope(case.call(base_url=base_url, headers=bearer(), timeout=15))


SPEC_OPERATIONS = {
    ("post", "/integration/connection"), ("get", "/integration/connection/list"),
    ("get", "/integration/connection/{id}"), ("put", "/integration/connection/{id}"),
    ("delete", "/integration/connection/{id}"), ("post", "/integration/connection/{id}/test"),
    ("post", "/integration/batch"), ("get", "/integration/batch/list"), ("get", "/integration/batch/statistics"),
    ("get", "/integration/batch/{id}"), ("put", "/integration/batch/{id}"), ("delete", "/integration/batch/{id}"),
    ("get", "/integration/batch/{id}/statistics"), ("post", "/integration/batch/{id}/sync"),
    ("post", "/integration/batch/{id}/retry"), ("post", "/integration/batch/{id}/cancel"),
    ("get", "/integration/batch/{id}/history"), ("get", "/integration/batch/{id}/runs/{runId}"),
}


def test_the_fuzzed_document_has_every_operation_of_the_spec() -> None:
    """An operation missing from the OpenAPI document would escape the run above."""
    document = openapi_document()
    operations = {(method, path) for path, methods in document["paths"].items() for method in methods}
    assert SPEC_OPERATIONS <= operations

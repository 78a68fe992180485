"""`GET /integration/events/stream` on a real port, the whole service behind it: a sync's lifecycle events
reach a streaming client in order, through the API's one reader of the events topic."""

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.live_server import LiveServer, live_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(state_dsn, broker) -> Iterator[LiveServer]:
    with live_server(state_dsn, broker.bootstrap) as running:
        yield running


def batch_of(server: LiveServer, source_dsn: str, target_dsn: str, rows: int) -> int:
    table = unique("orders")
    asyncio.run(create_orders(source_dsn, table, rows))
    asyncio.run(create_empty_like_orders(target_dsn, table))
    ids = [server.api("POST", "/integration/connection", json={"name": unique("c"), "type": "postgresql",
                                                               "url": dsn}).json()["data"]["id"]
           for dsn in (source_dsn, target_dsn)]
    batch = server.api("POST", "/integration/batch", json={
        "name": unique("b"), "sourceConnectionId": ids[0], "source": {"table": table},
        "targetConnectionId": ids[1], "target": {"table": table, "mode": "overwrite"}, "chunkSize": 500})
    return int(batch.json()["data"]["id"])


def read_events(server: LiveServer, query: str, until_type: str, found: list[dict], opened: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {server.token(['integration:batch:query'])}"}
    with httpx.stream("GET", f"{server.url}/integration/events/stream{query}", headers=headers, timeout=60) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers["cache-control"] == "no-store"
        for line in answer.iter_lines():
            opened.set()
            if line.startswith("data: "):
                event = json.loads(line.removeprefix("data: "))
                if found or event["eventType"] == "BatchSyncStarted":  # not the tail of the warm-up run
                    found.append(event)
                if found and event["eventType"] == until_type:
                    return


def test_a_sync_is_streamed_live_started_progress_completed(server, source_dsn, target_dsn) -> None:
    batch_id = batch_of(server, source_dsn, target_dsn, 20_000)
    other_id = batch_of(server, source_dsn, target_dsn, 10)
    server.api("POST", f"/integration/batch/{batch_id}/sync")  # a first run: the API's reader is positioned now
    found: list[dict] = []
    opened = threading.Event()
    reader = threading.Thread(target=read_events,
                              args=(server, f"?batchId={batch_id}", "BatchSyncCompleted", found, opened))
    reader.start()
    assert opened.wait(10), "the stream opens with its retry hint and a comment at once"

    assert server.api("POST", f"/integration/batch/{other_id}/sync").status_code == 200
    synced = server.api("POST", f"/integration/batch/{batch_id}/sync")
    reader.join(60)

    assert synced.status_code == 200, synced.text
    run_id = synced.json()["data"]["runId"]
    types = [event["eventType"] for event in found]
    assert types[0] == "BatchSyncStarted" and types[-1] == "BatchSyncCompleted", types
    assert "BatchSyncProgress" in types
    assert {event["runId"] for event in found} == {run_id}, "only the batch asked for, only this run"
    assert found[-1]["success"] is True and found[-1]["recordsSynced"] == 20_000


def test_the_stream_needs_a_token_with_the_query_permission(server) -> None:
    path = f"{server.url}/integration/events/stream"
    assert httpx.get(path, timeout=10).status_code == 401
    assert httpx.get(path + "?access_token=" + server.token(), timeout=10).status_code == 401, "never from a URL"
    limited = {"Authorization": f"Bearer {server.token(['integration:batch:list'])}"}
    assert httpx.get(path, headers=limited, timeout=10).status_code == 403
    assert server.api("GET", "/integration/events/stream?batchId=0").status_code == 400


def test_the_server_stops_at_once_with_a_stream_open(state_dsn, broker) -> None:
    """uvicorn waits for open answers before it stops; an event stream never ends unless told to."""
    opened, ended = threading.Event(), threading.Event()
    with live_server(state_dsn, broker.bootstrap) as server:
        def follow() -> None:
            url, headers = f"{server.url}/integration/events/stream", {"Authorization": f"Bearer {server.token()}"}
            with contextlib.suppress(httpx.HTTPError), httpx.stream("GET", url, headers=headers, timeout=60) as answer:
                for _ in answer.iter_lines():
                    opened.set()
            ended.set()

        threading.Thread(target=follow, daemon=True).start()
        assert opened.wait(10)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 10
    assert ended.wait(5), "the client saw its stream end"

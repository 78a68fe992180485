"""Run notifications on real PostgreSQL, the real broker and real local HTTP servers (docs/spec.md §9): the
run's `BatchSyncCompleted` is POSTed with a signature a receiver can verify, a receiver that fails twice gets
it on the third attempt, the delivery log is in the run detail, `BATCHSYNC_NOTIFY_URL` covers batches without
`notify`, an address the egress policy denies is refused (never contacted) and logged, and the chat adapter of
docs/examples turns it into a WeCom message."""

import asyncio
import contextlib
import importlib.util
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from consumers.notifier import NotificationFeed
from producers.publisher import Publisher
from service.config import Settings
from service.db.engine import make_engine, make_sessionmaker
from service.notify.deliveries import Defaults
from service.notify.sender import Notifier
from service.security.network import NetworkPolicy
from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.databases import migrated_database
from tests.support.loopback import http_server, silent_server
from tests.support.scheduling import eventually
from tests.support.sql import fetch
from tests.support.stack import Stack, create_batch, create_connection, running_stack, stack_settings

pytestmark = pytest.mark.slow

ADAPTER = Path(__file__).resolve().parents[2] / "docs" / "examples" / "notify_chat_adapter.py"


def load_adapter():
    spec = importlib.util.spec_from_file_location("notify_chat_adapter", ADAPTER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Receiver:
    """A webhook receiver that answers 500 to its first `failures` requests, then 200, and keeps them all."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    failing = len(receiver.requests) <= receiver.failures
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        with http_server(Handler) as url:
            yield url


@pytest.fixture(scope="module")
def state(broker):
    with migrated_database("bs_notify") as dsn:
        yield dsn


@pytest.fixture(scope="module")
async def stack(state, broker) -> AsyncIterator[Stack]:
    settings = stack_settings(state, broker.bootstrap, notify_backoff_seconds=0.2)
    async with running_stack(settings) as running:
        yield running


@contextlib.asynccontextmanager
async def notifying(settings: Settings, network: NetworkPolicy | None = None) -> AsyncIterator[None]:
    """The scheduler process's notification parts: the events feed and the sender."""
    engine = make_engine(settings.database_url or "")
    sessions = make_sessionmaker(engine)
    publisher = Publisher(settings)
    await publisher.start()
    sender = Notifier(sessions, network or NetworkPolicy(), settings.secret_key.get_secret_value(),
                      Defaults.from_settings(settings), timeout=5)
    # The feed reads every partition alone, as `up` runs it: it starts at once instead of after the 3 s a consumer
    # group takes to form on the test broker (how events reach it is not what these tests are about).
    solo = settings.model_copy(update={"partition_assignment": "all"})
    tasks = [asyncio.create_task(NotificationFeed(solo, sessions, publisher).run()),
             asyncio.create_task(sender.run())]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await publisher.stop()
        await engine.dispose()


async def orders_batch(stack: Stack, source_dsn: str, target_dsn: str, mode: str = "append", **extra: object) -> int:
    table = unique("orders")
    await create_orders(source_dsn, table, 30)
    await create_empty_like_orders(target_dsn, table)
    src = await create_connection(stack, unique("src"), source_dsn)
    tgt = await create_connection(stack, unique("tgt"), target_dsn)
    return await create_batch(stack, unique("notify"), src, tgt, {"table": table}, {"table": table, "mode": mode},
                              **extra)


async def run_detail(stack: Stack, batch_id: int, run_id: str) -> dict:
    response = await stack.client.get(f"/integration/batch/{batch_id}/runs/{run_id}", headers=stack.headers())
    return response.json()["data"]


async def delivered(stack: Stack, batch_id: int, run_id: str, status: str = "DELIVERED") -> list[dict] | None:
    notes = (await run_detail(stack, batch_id, run_id))["notifications"]
    return notes if notes and all(n["status"] == status for n in notes) else None


async def test_a_receiver_that_fails_twice_gets_the_signed_event_on_the_third_attempt(stack, source_dsn,
                                                                                      target_dsn):
    receiver = Receiver(failures=2)
    with receiver.serving() as url:
        batch_id = await orders_batch(stack, source_dsn, target_dsn,
                                      notify={"url": f"{url}/hooks/s3cr3t-token", "on": ["FAILED", "SUCCESS"]})
        response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
        run_id = response.json()["data"]["runId"]  # the run finished before any notification was sent
        async with notifying(stack.settings):
            notes = await eventually(lambda: delivered(stack, batch_id, run_id), within=30)
    assert len(receiver.requests) == 3
    assert notes == [{"url": f"{url}/…", "status": "DELIVERED", "attempts": 3, "responseStatus": 200,
                      "lastError": None, "nextAttemptAt": None, "deliveredAt": notes[0]["deliveredAt"],
                      "createdAt": notes[0]["createdAt"]}]
    key = stack.settings.secret_key.get_secret_value()
    verify = load_adapter().verify
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1  # every attempt sends the same bytes, the event as the log holds it
    headers, body = receiver.requests[-1]
    assert verify(body, key, headers["x-batchsync-signature"])
    assert not verify(body.replace(b'"success":true', b'"success":false'), key, headers["x-batchsync-signature"])
    assert not verify(body, "another-key", headers["x-batchsync-signature"])
    event = json.loads(body)
    assert event["eventType"] == "BatchSyncCompleted" and event["runId"] == run_id and event["success"] is True
    assert event["recordsSynced"] == 30 and headers["content-type"] == "application/json"


async def test_the_global_url_reports_failures_of_batches_without_notify(stack, source_dsn, target_dsn):
    receiver = Receiver()
    with receiver.serving() as url:
        settings = stack.settings.model_copy(update={"notify_url": f"{url}/all"})
        src = await create_connection(stack, unique("src"), source_dsn)
        missing = unique("missing")
        batch_id = await create_batch(stack, unique("notify"), src, src, {"table": missing}, {"table": missing})
        ok_batch = await orders_batch(stack, source_dsn, target_dsn)
        failed = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
        assert failed.status_code == 400
        succeeded = await stack.client.post(f"/integration/batch/{ok_batch}/sync", headers=stack.headers())
        run_id = (await stack.client.get(f"/integration/batch/{batch_id}", headers=stack.headers())
                  ).json()["data"]["lastRunId"]
        async with notifying(settings):
            await eventually(lambda: delivered(stack, batch_id, run_id), within=30)
            await asyncio.sleep(1)
    events = [json.loads(body) for _, body in receiver.requests]
    assert [(e["batchId"], e["success"], e["errorCode"]) for e in events] == [(batch_id, False, "TARGET_ERROR")]
    ok_run = succeeded.json()["data"]["runId"]
    assert (await run_detail(stack, ok_batch, ok_run))["notifications"] == []  # SUCCESS is not in the default `on`


async def test_a_denied_address_is_refused_at_delivery_and_logged(stack, source_dsn, target_dsn, caplog):
    receiver = Receiver()
    with receiver.serving() as url:
        batch_id = await orders_batch(stack, source_dsn, target_dsn, notify={"url": url, "on": ["SUCCESS"]})
        response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
        run_id = response.json()["data"]["runId"]
        denied = NetworkPolicy.of(("127.0.0.1/32",), None, None, "")  # BATCHSYNC_EGRESS_DENY=127.0.0.1/32
        with caplog.at_level(logging.WARNING, logger="service.notify.sender"):
            async with notifying(stack.settings, denied):
                notes = await eventually(lambda: delivered(stack, batch_id, run_id, "REFUSED"), within=30)
                await asyncio.sleep(0.5)
    assert receiver.requests == []  # never contacted
    assert notes[0]["attempts"] == 1 and notes[0]["nextAttemptAt"] is None and notes[0]["lastError"]
    assert any("refused by the network policy" in r.getMessage() for r in caplog.records)
    assert all("/hooks" not in r.getMessage() for r in caplog.records)


async def test_the_chat_adapter_turns_a_notification_into_a_wecom_message(stack, source_dsn, target_dsn):
    chat = Receiver()
    adapter = load_adapter()
    with chat.serving() as chat_url:

        class Wecom(adapter.Adapter):
            secret_key = stack.settings.secret_key.get_secret_value()
            chat_kind = "wecom"

        Wecom.chat_url = f"{chat_url}/cgi-bin/webhook/send?key=k"
        with http_server(Wecom) as adapter_url:
            batch_id = await orders_batch(stack, source_dsn, target_dsn, notify={"url": adapter_url,
                                                                                 "on": ["SUCCESS"]})
            response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
            run_id = response.json()["data"]["runId"]
            async with notifying(stack.settings):
                notes = await eventually(lambda: delivered(stack, batch_id, run_id), within=30)
    assert notes[0]["responseStatus"] == 204
    message = json.loads(chat.requests[0][1])
    assert message["msgtype"] == "text"
    assert message["text"]["content"].startswith(f"batchsync: batch {batch_id} run {run_id} SUCCESS")
    assert load_adapter().chat_message("slack", "x") == {"text": "x"}


async def test_the_notify_address_is_shown_masked_and_kept_when_sent_back(stack, source_dsn, target_dsn):
    secret_url = "https://hooks.example.com/services/T000/B000/XXXXsecretXXXX?token=abc"
    batch_id = await orders_batch(stack, source_dsn, target_dsn, notify={"url": secret_url})
    shown = (await stack.client.get(f"/integration/batch/{batch_id}", headers=stack.headers())).json()["data"]
    assert shown["notify"] == {"url": "https://hooks.example.com/…", "on": ["FAILED"]}
    assert "secret" not in json.dumps(shown)
    body = {k: v for k, v in shown.items()
            if k in ("name", "sourceConnectionId", "source", "targetConnectionId", "target", "notify")}
    edited = await stack.client.put(f"/integration/batch/{batch_id}", headers=stack.headers(),
                                    json={**body, "notify": {**shown["notify"], "on": ["FAILED", "SUCCESS"]}})
    assert edited.status_code == 200, edited.text
    stored = await fetch(stack.settings.asyncpg_dsn, "SELECT notify FROM batches WHERE id = $1", batch_id)
    assert json.loads(stored[0]["notify"]) == {"url": secret_url, "on": ["FAILED", "SUCCESS"]}
    changed = await stack.client.put(f"/integration/batch/{batch_id}", headers=stack.headers(),
                                     json={**body, "notify": {"url": "http://other.example/x"}})
    assert changed.json()["data"]["notify"]["url"] == "http://other.example/…"
    refused = await stack.client.put(f"/integration/batch/{batch_id}", headers=stack.headers(),
                                     json={**body, "notify": {"url": "ftp://files.example/x"}})
    assert refused.status_code == 400 and "notify.url" in refused.json()["message"], refused.text


async def test_a_hung_receiver_never_delays_a_run(stack, source_dsn, target_dsn):
    with silent_server() as port:
        batch_id = await orders_batch(stack, source_dsn, target_dsn, "overwrite",
                                      notify={"url": f"http://127.0.0.1:{port}/hook", "on": ["SUCCESS"]})
        async with notifying(stack.settings):
            for _ in range(2):  # the second run starts while the first one's notification hangs
                response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
                assert response.status_code == 200, response.text
                run_id = response.json()["data"]["runId"]
                run = await run_detail(stack, batch_id, run_id)
                took = datetime.fromisoformat(run["finishedAt"]) - datetime.fromisoformat(run["startedAt"])
                assert run["status"] == "SUCCESS" and took < timedelta(seconds=2), run
            notes = await eventually(lambda: _attempted(stack, batch_id, run_id), within=30)
    assert notes[0]["status"] == "PENDING" and "Timeout" in notes[0]["lastError"]  # tried again later


async def _attempted(stack: Stack, batch_id: int, run_id: str) -> list[dict] | None:
    notes = (await run_detail(stack, batch_id, run_id))["notifications"]
    return notes if notes and notes[0]["attempts"] >= 1 else None

"""The whole service on real PostgreSQL and the real broker, in this process: worker, projector,
and the API app behind an httpx client (ASGI transport), with its real request-reply client."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from service.auth import mint_token
from service.config import Settings

TEST_SECRET = "test-secret-for-batchsync-0123456789"


SOLO: dict[str, object] = {"partition_assignment": "all"}
"""Overrides for a stack whose worker (and projector) read every partition alone, as `up` runs them: a run starts at
once instead of after the 3 s a consumer group takes to form on the test broker. For tests of what a run does, not
of how requests are shared among workers."""


def stack_settings(state_dsn: str, bootstrap: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": state_dsn,
        "kafka_bootstrap": bootstrap,
        "topic_prefix": f"t{uuid.uuid4().hex[:8]}.batch.sync",
        "jwt_secret": TEST_SECRET,
        "lease_seconds": 3,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
        "connect_timeout_seconds": 2,
        "sync_wait_seconds": 30,
        "requested_partitions": 3,
        "events_partitions": 3,
        "replies_partitions": 2,
        "progress_interval_seconds": 0.05,
        "worker_concurrency": 4,
        "reply_fetch_max_wait_ms": 10,
        "request_fetch_max_wait_ms": 10,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class Stack:
    settings: Settings
    client: httpx.AsyncClient
    token: str

    def headers(self, perms: list[str] | None = None, sub: str = "tester") -> dict[str, str]:
        token = self.token if perms is None else mint_token(self.settings, sub, perms)
        return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from service.bootstrap import api_app

    async with api_app(settings) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://batchsync.test", timeout=60) as client:
            yield client


@contextlib.asynccontextmanager
async def running_stack(settings: Settings, *, worker: bool = True, projector: bool = True) -> AsyncIterator[Stack]:
    from service.bootstrap import run_projector, run_worker

    tasks = []
    if worker:
        tasks.append(asyncio.create_task(run_worker(settings), name="worker"))
    if projector:
        tasks.append(asyncio.create_task(run_projector(settings), name="projector"))
    try:
        async with api_client(settings) as client:
            yield Stack(settings, client, mint_token(settings, "tester", ["*:*:*"]))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def create_connection(stack: Stack, name: str, dsn: str) -> int:
    response = await stack.client.post(
        "/integration/connection", headers=stack.headers(),
        json={"name": name, "type": "postgresql", "url": dsn},
    )
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["id"])


async def create_batch(stack: Stack, name: str, source_id: int, target_id: int, source: dict, target: dict,
                       **extra: object) -> int:
    body = {"name": name, "sourceConnectionId": source_id, "source": source, "targetConnectionId": target_id,
            "target": target, **extra}
    response = await stack.client.post("/integration/batch", headers=stack.headers(), json=body)
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["id"])


async def wait_for_run(stack: Stack, batch_id: int, run_id: str, within: float = 60) -> dict:
    """Poll the run until it is terminal; returns its data."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await stack.client.get(f"/integration/batch/{batch_id}/runs/{run_id}", headers=stack.headers())
        if response.status_code == 200 and response.json()["data"]["status"] in ("SUCCESS", "FAILED", "CANCELLED"):
            return response.json()["data"]
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"run {run_id} not finished: {response.text}")
        await asyncio.sleep(0.1)

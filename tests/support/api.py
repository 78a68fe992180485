"""Helpers for the API tests (no tests here): the app on real PostgreSQL behind an httpx client whose
every response is checked for leaked secrets, tokens, and builders for connections and batches."""

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx

from schemas.events import BatchSyncCompleted, BatchSyncRequested
from service.api.app import AppState, create_app
from service.auth import mint_token
from service.config import Settings
from service.db.engine import make_engine, make_sessionmaker

SECRET = "api-test-secret-0123456789-abcdefgh"
DB_PASSWORD = "Pa55-w0rd-NEVER-SHOWN"
API_TOKEN = "tok-NEVER-SHOWN-42"
LEAKS = (DB_PASSWORD, API_TOKEN)


class NoRequester:
    """The catalog routes never publish; reaching here is a wiring bug."""

    async def request(self, event: BatchSyncRequested, timeout: float) -> BatchSyncCompleted | None:
        raise AssertionError("the catalog must not publish sync requests")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def asyncpg_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def api_settings(dsn: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": dsn, "jwt_secret": SECRET, "connect_timeout_seconds": 2}
    values.update(overrides)
    return Settings(_env_file=None, **values)


def bearer(perms: Iterable[str] = ("*:*:*",), sub: str = "tester") -> dict[str, str]:
    token = mint_token(Settings(_env_file=None, jwt_secret=SECRET), sub, list(perms))
    return {"Authorization": f"Bearer {token}"}


async def _no_leaks(response: httpx.Response) -> None:
    await response.aread()
    for secret in LEAKS:
        assert secret not in response.text, f"{secret!r} leaked by {response.request.url}"


@contextlib.asynccontextmanager
async def api_client(settings: Settings, requester: Any = None) -> AsyncIterator[httpx.AsyncClient]:
    engine = make_engine(settings.database_url or "", connect_timeout=2)
    app = create_app(AppState(settings, make_sessionmaker(engine), requester or NoRequester()))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=30,
                                     headers=bearer(), event_hooks={"response": [_no_leaks]}) as client:
            yield client
    finally:
        await engine.dispose()


async def create_connection(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    payload = {"name": unique("conn"), "type": "postgresql",
               "url": f"postgresql://app:{DB_PASSWORD}@127.0.0.1:5432/nowhere"} | body
    response = await client.post("/integration/connection", json=payload)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def batch_body(source_id: int, target_id: int, **overrides: Any) -> dict[str, Any]:
    return {"name": unique("batch"), "sourceConnectionId": source_id, "source": {"table": "orders"},
            "targetConnectionId": target_id, "target": {"table": "orders_copy", "mode": "append"}} | overrides


async def create_batch(client: httpx.AsyncClient, source_id: int, target_id: int, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/integration/batch", json=batch_body(source_id, target_id, **overrides))
    assert response.status_code == 200, response.text
    return response.json()["data"]

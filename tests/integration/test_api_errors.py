"""Framework errors, outages and surprises all answer in the envelope, never FastAPI's bare `detail`."""

import logging
import time

import pytest

import service.runs.requests
from tests.support.api import DB_PASSWORD, api_client, api_settings, asyncpg_url
from tests.support.brokers import free_port
from tests.support.loopback import silent_server


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        yield client


async def test_unknown_route_is_404_envelope(client) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "资源不存在", "data": None}


async def test_wrong_method_is_405_envelope(client) -> None:
    response = await client.patch("/integration/batch/1")
    assert response.status_code == 405
    assert response.json() == {"code": 405, "message": "请求方法不允许", "data": None}
    assert "GET" in response.headers["allow"]


async def test_non_integer_id_is_400_naming_the_field(client) -> None:
    response = await client.get("/integration/batch/abc")
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": "参数错误：id：应为整数", "data": None}


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "参数错误：请求体不是合法的 JSON"),
    (b"", "参数错误：缺少必填字段"),
    (b"[1, 2]", "参数错误：应为对象"),
])
async def test_bad_body_is_400(client, content: bytes, message: str) -> None:
    response = await client.post("/integration/connection", content=content,
                                 headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": message, "data": None}


async def test_unexpected_error_is_500_with_details_only_in_the_log(client, monkeypatch, caplog) -> None:
    async def explode(*_args):
        raise RuntimeError(f"boom with {DB_PASSWORD}")

    monkeypatch.setattr(service.runs.requests, "request_sync", explode)
    with caplog.at_level(logging.ERROR, logger="service.api.errors"):
        response = await client.post("/integration/batch/1/sync")
    assert response.status_code == 500
    assert response.json() == {"code": 500, "message": "服务器内部错误", "data": None}
    assert any(record.exc_info and "boom" in str(record.exc_info[1]) for record in caplog.records)


async def test_probes_with_a_live_database(client) -> None:
    assert (await client.get("/healthz")).json() == {"code": 200, "message": "操作成功", "data": {"status": "UP"}}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["data"] == {"status": "UP", "database": "UP"}


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/integration/batch/1"),
    ("GET", "/integration/batch/list"),
    ("GET", "/integration/batch/statistics"),
    ("DELETE", "/integration/connection/1"),
    ("GET", "/readyz"),
])
async def test_database_down_is_503_within_seconds(method: str, path: str) -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    async with api_client(api_settings(dead)) as client:
        started = time.monotonic()
        response = await client.request(method, path)
        elapsed = time.monotonic() - started
        assert (await client.get("/healthz")).status_code == 200
    assert response.status_code == 503
    assert response.json() == {"code": 503, "message": "服务暂不可用：数据库", "data": None}
    assert elapsed < 5


async def test_hung_database_is_503_after_the_connect_timeout() -> None:
    with silent_server() as port:
        async with api_client(api_settings(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nowhere")) as client:
            started = time.monotonic()
            response = await client.get("/integration/batch/list")
            elapsed = time.monotonic() - started
    assert response.json() == {"code": 503, "message": "服务暂不可用：数据库", "data": None}
    assert elapsed < 5


async def test_an_id_beyond_the_state_store_range_is_a_bad_request(state_dsn) -> None:
    settings = api_settings(asyncpg_url(state_dsn))
    async with api_client(settings) as client:
        for method, path in (("post", "/integration/batch/3000000000/sync"), ("post", "/integration/batch/0/cancel"),
                             ("get", "/integration/batch/3000000000"), ("get", "/integration/connection/3000000000"),
                             ("get", "/integration/batch/3000000000/history")):
            response = await getattr(client, method)(path)
            assert response.status_code == 400, (path, response.text)
            assert response.json()["message"].startswith("参数错误：")

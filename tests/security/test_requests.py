"""docs/spec.md §7 Requests and Tokens: bodies are bounded and never read before authentication, every bad input
is a 400 envelope (never a 500), tokens live at most BATCHSYNC_JWT_MAX_TTL_SECONDS, `/test` needs
`…:edit`, and `batchsync sync` never takes its token on the command line."""

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typer.testing import CliRunner

from service.api.app import AppState, create_app
from service.cli import app as cli_app
from service.config import Settings
from service.db.engine import make_engine, make_sessionmaker
from tests.support.api import SECRET, NoRequester, api_settings, asyncpg_url, bearer, unique
from tests.support.brokers import free_port
from tests.support.loopback import http_server

LIMIT = 64 * 1024
BIG = 100 * 1024 * 1024
CHUNK = 64 * 1024
UNAUTHORIZED = {"code": 401, "message": "认证失败，无法访问系统资源",
                "data": {"reason": "missing", "description": "no bearer token was sent"}}
TOO_LARGE = {"code": 413, "message": "请求体过大", "data": None}


class BodyMeter:
    """Wraps the app and counts the body bytes it pulled from the server: what the service really read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


@contextlib.asynccontextmanager
async def metered_client(state_dsn: str, **overrides: Any) -> AsyncIterator[tuple[httpx.AsyncClient, BodyMeter]]:
    settings = api_settings(asyncpg_url(state_dsn), max_body_bytes=LIMIT, **overrides)
    engine = make_engine(settings.database_url or "", connect_timeout=2)
    meter = BodyMeter(create_app(AppState(settings, make_sessionmaker(engine), NoRequester())))
    transport = httpx.ASGITransport(app=meter, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=30) as client:
            yield client, meter
    finally:
        await engine.dispose()


@pytest.fixture
async def metered(state_dsn):
    async with metered_client(state_dsn) as pair:
        yield pair


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with metered_client(state_dsn) as (client, _):
        client.headers.update(bearer())
        yield client


async def endless(total: int = BIG) -> AsyncIterator[bytes]:
    """A body streamed in chunks, never held whole by the client either."""
    chunk = b"x" * CHUNK
    for _ in range(total // CHUNK):
        yield chunk


# --- body limit and auth before the body ------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_unauthenticated_big_body_is_401_and_never_read(metered, framing: str) -> None:
    client, meter = metered
    headers = {"content-type": "application/json"}
    if framing == "content-length":
        headers["content-length"] = str(BIG)
    response = await client.post("/integration/connection", content=endless(), headers=headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert meter.received == 0


async def test_content_length_over_the_limit_is_413_before_reading(metered) -> None:
    client, meter = metered
    response = await client.post("/integration/connection", content=endless(),
                                 headers={**bearer(), "content-type": "application/json", "content-length": str(BIG)})
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    assert response.headers["connection"] == "close"
    assert meter.received == 0


async def test_chunked_body_past_the_limit_is_413_and_reading_stops_there(metered) -> None:
    client, meter = metered
    response = await client.post("/integration/connection", content=endless(),
                                 headers={**bearer(), "content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    assert LIMIT < meter.received <= LIMIT + CHUNK


async def test_body_within_the_limit_is_read_and_handled(metered) -> None:
    client, meter = metered
    body = json.dumps(connection()).encode()
    body += b" " * (LIMIT - len(body))
    response = await client.post("/integration/connection", content=body,
                                 headers={**bearer(), "content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert meter.received == len(body)


async def test_open_routes_are_bounded_too(metered) -> None:
    client, meter = metered
    response = await client.post("/healthz", content=endless(), headers={"content-length": str(BIG)})
    assert response.status_code == 413 and response.json() == TOO_LARGE
    assert meter.received == 0


async def test_invalid_content_length_is_400(metered) -> None:
    client, _ = metered
    response = await client.post("/integration/connection", content=b"{}",
                                 headers={**bearer(), "content-length": "12abc"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("参数错误：")


SERVE = """
import sys, uvicorn
from service.api.app import AppState, create_app
from service.db.engine import make_engine, make_sessionmaker
from tests.support.api import NoRequester, api_settings
settings = api_settings(sys.argv[1])
app = create_app(AppState(settings, make_sessionmaker(make_engine(settings.database_url)), NoRequester()))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def peak_rss_mib(pid: int) -> int:
    """VmHWM: the most memory the process ever held, so a spike between two samples is not missed."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) // 1024


def push(port: int, authorization: str | None, chunked: bool, total: int = BIG) -> str:
    """POST `total` bytes over a real socket while reading the answer; returns the status line."""
    head = "POST /integration/connection HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
    head += f"Authorization: {authorization}\r\n" if authorization else ""
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
    chunk = b"x" * CHUNK
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
    with socket.create_connection(("127.0.0.1", port)) as sock:
        def send_body() -> None:
            with contextlib.suppress(OSError):
                sock.sendall(head.encode() + b"\r\n")
                for _ in range(total // CHUNK):
                    sock.sendall(frame)

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        answer = b""
        with contextlib.suppress(OSError):
            while b"\r\n" not in answer and (part := sock.recv(4096)):
                answer += part
            sock.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=30)
    return answer.split(b"\r\n")[0].decode()


def test_a_real_server_holds_its_memory_under_100_mb_bodies(state_dsn) -> None:
    """Before the guard, each 100 MB body grew the API by about 200 MiB, anonymous or not."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVE, asyncpg_url(state_dsn), str(port)],
                              cwd=Path(__file__).parents[2])
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.05)
        token = bearer()["Authorization"]
        for _ in range(3):
            httpx.get(f"http://127.0.0.1:{port}/integration/connection/list", headers={"Authorization": token})
        before = peak_rss_mib(server.pid)
        answers = [push(port, auth, chunked) for auth in (None, token) for chunked in (False, True)]
        grown = peak_rss_mib(server.pid) - before
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert [a.split(" ", 2)[1] for a in answers] == ["401", "401", "413", "413"], answers
    assert grown <= 8, f"the API grew by {grown} MiB"


# --- every bad input is a 400 envelope ----------------------------------------------------------------

DEEP = "[" * 30_000 + "]" * 30_000
NESTED_41: Any = 1
for _ in range(41):
    NESTED_41 = [NESTED_41]


def connection(**fields: Any) -> dict[str, Any]:
    return {"name": unique("c"), "type": "postgresql", "url": "postgresql://u@127.0.0.1:1/db"} | fields


def raw(text: str) -> bytes:
    """JSON text as given: lone surrogates and NaN survive only when written out by hand."""
    return text.encode()


BAD_BODIES: dict[str, tuple[str, bytes]] = {
    "nul-in-name": ("/integration/connection", json.dumps(connection(name="a\x00b")).encode()),
    "surrogate-in-name": ("/integration/connection", raw('{"name": "a\\ud800", "type": "csv"}')),
    "nul-in-url": ("/integration/connection", json.dumps(connection(url="postgresql://u@h\x00:1/db")).encode()),
    "nul-in-params-key": ("/integration/connection", json.dumps(connection(params={"a\x00": 1})).encode()),
    "surrogate-in-params": ("/integration/connection",
                            raw('{"name": "c", "type": "csv", "params": {"path": "\\udc80"}}')),
    "surrogate-in-options": ("/integration/connection",
                             raw('{"name": "c", "type": "csv", "options": {"a": ["\\ud83d"]}}')),
    "nan-in-params": ("/integration/connection", raw('{"name": "c", "type": "csv", "params": {"n": NaN}}')),
    "infinity-in-options": ("/integration/connection",
                            raw('{"name": "c", "type": "csv", "options": {"n": -Infinity}}')),
    "huge-int-in-params": ("/integration/connection", json.dumps(connection(params={"n": 10**30})).encode()),
    "params-too-deep": ("/integration/connection", json.dumps(connection(options={"x": NESTED_41})).encode()),
    "body-too-deep-to-parse": ("/integration/connection", DEEP.encode()),
    "number-too-long-to-parse": ("/integration/connection", raw('{"name": "c", "type": "csv", "n": ' + "9" * 5000
                                                                + "}")),
    "url-unsplittable": ("/integration/connection", json.dumps(connection(url="http://[::1/x")).encode()),
    "url-port-out-of-range": ("/integration/connection",
                              json.dumps(connection(url="postgresql://u:p@127.0.0.1:70000/db")).encode()),
    "url-port-zero": ("/integration/connection", json.dumps(connection(url="http://127.0.0.1:0/")).encode()),
    "url-host-not-idna": ("/integration/connection",
                          json.dumps(connection(type="http", url=f"http://{'a' * 64}.example/")).encode()),
    "url-punycode-that-does-not-decode": ("/integration/connection",
                                          json.dumps(connection(type="http", url="http://xn--a.example:1/")).encode()),
    "url-password-not-utf8": ("/integration/connection",
                              json.dumps(connection(type="mysql", url="mysql://u:%ff@127.0.0.1:1/db")).encode()),
    "url-encoded-nul-in-password": ("/integration/connection",
                                    json.dumps(connection(url="postgresql://u:a%00b@127.0.0.1:1/db")).encode()),
    "batch-id-beyond-32-bits": ("/integration/batch", json.dumps({
        "name": "b", "sourceConnectionId": 2**31, "source": {"table": "t"},
        "targetConnectionId": 1, "target": {"table": "t"}}).encode()),
    "batch-id-beyond-64-bits": ("/integration/batch", json.dumps({
        "name": "b", "sourceConnectionId": 1, "source": {"table": "t"},
        "targetConnectionId": 2**70, "target": {"table": "t"}}).encode()),
    "nul-in-query": ("/integration/batch", json.dumps({
        "name": "b", "sourceConnectionId": 1, "source": {"query": "SELECT 1\x00"},
        "targetConnectionId": 1, "target": {"table": "t"}}).encode()),
    "surrogate-in-mapping-value": ("/integration/batch", raw(
        '{"name": "b", "sourceConnectionId": 1, "source": {"table": "t"}, "targetConnectionId": 1, '
        '"target": {"table": "t"}, "mapping": [{"to": "c", "value": "\\ud800"}]}')),
    "table-with-trailing-newline": ("/integration/batch", json.dumps({
        "name": "b", "sourceConnectionId": 1, "source": {"table": "t\n"},
        "targetConnectionId": 1, "target": {"table": "t"}}).encode()),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
async def test_bad_bodies_are_400(client, case: str) -> None:
    path, body = BAD_BODIES[case]
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["code"] == 400 and payload["data"] is None
    assert payload["message"].startswith("参数错误："), payload


async def test_bad_edit_is_400_too(client) -> None:
    created = await client.post("/integration/connection", json=connection())
    assert created.status_code == 200, created.text
    id_ = created.json()["data"]["id"]
    response = await client.put(f"/integration/connection/{id_}", content=raw(
        '{"name": "c\\ud800", "type": "postgresql"}'), headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["message"].startswith("参数错误：")


BAD_URLS = [
    "/integration/connection/list?name=a%00b",
    "/integration/batch/list?name=%00",
    "/integration/batch/list?status=RUN%00NING",
    "/integration/batch/list?pageNum=1000000000000",
    "/integration/batch/list?pageNum=9223372036854775808",
    "/integration/connection/list?pageSize=100000",
    "/integration/connection/list?pageNum=0",
    "/integration/batch/4294967296",
    "/integration/connection/2147483648",
    "/integration/batch/-1/history",
    "/integration/batch/1/history?pageNum=99999999999",
    "/integration/batch/a%00b",
]


@pytest.mark.parametrize("url", BAD_URLS)
async def test_bad_paths_and_queries_are_400(client, url: str) -> None:
    response = await client.get(url)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["code"] == 400 and payload["message"].startswith("参数错误："), payload


async def test_the_largest_page_number_still_answers(client) -> None:
    response = await client.get("/integration/batch/list?pageNum=1000000&pageSize=500")
    assert response.status_code == 200
    assert response.json()["data"]["rows"] == []


async def test_test_needs_edit_not_query(client) -> None:
    created = await client.post("/integration/connection", json=connection())
    id_ = created.json()["data"]["id"]
    refused = await client.post(f"/integration/connection/{id_}/test",
                                headers=bearer(["integration:connection:query", "integration:connection:list"]))
    assert refused.status_code == 403
    assert refused.json()["message"] == "无权限执行此操作"
    assert refused.json()["data"]["permission"] == "integration:connection:edit"
    allowed = await client.post(f"/integration/connection/{id_}/test", headers=bearer(["integration:connection:edit"]))
    assert allowed.status_code not in (401, 403), allowed.text


# --- tokens -----------------------------------------------------------------------------------------


def signed(**claims: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode({"sub": "alice", "perms": ["*:*:*"], **claims}, SECRET, "HS256")}


async def test_token_lifetime_is_bounded(state_dsn) -> None:
    now = int(time.time())
    async with metered_client(state_dsn, jwt_max_ttl_seconds=600) as (client, _):
        at_the_limit = await client.get("/integration/batch/list", headers=signed(iat=now, exp=now + 600))
        assert at_the_limit.status_code == 200
        for headers in (signed(iat=now, exp=now + 601), signed(iat=now - 3000, exp=now + 60),
                        signed(exp=now + 60), signed(iat=now)):
            response = await client.get("/integration/batch/list", headers=headers)
            assert response.status_code == 401
            assert response.json()["message"] == UNAUTHORIZED["message"]
            assert response.json()["data"]["reason"] in ("ttl_too_long", "missing_claim")


async def test_default_max_ttl_is_one_day(state_dsn) -> None:
    now = int(time.time())
    assert Settings(_env_file=None).jwt_max_ttl_seconds == 86_400
    async with metered_client(state_dsn) as (client, _):
        response = await client.get("/integration/batch/list", headers=signed(iat=now, exp=now + 30 * 86_400))
        assert response.status_code == 401


runner = CliRunner()


def test_token_command_refuses_a_ttl_beyond_the_max() -> None:
    result = runner.invoke(cli_app, ["token", "--sub", "a", "--perms", "*:*:*", "--ttl", "86401"],
                           env={"BATCHSYNC_JWT_SECRET": SECRET, "BATCHSYNC_JWT_MAX_TTL_SECONDS": None})
    assert result.exit_code == 2 and result.stdout == ""
    assert "BATCHSYNC_JWT_MAX_TTL_SECONDS" in result.stderr
    ok = runner.invoke(cli_app, ["token", "--sub", "a", "--perms", "*:*:*", "--ttl", "86400"],
                       env={"BATCHSYNC_JWT_SECRET": SECRET, "BATCHSYNC_JWT_MAX_TTL_SECONDS": None})
    claims = jwt.decode(ok.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 86_400


# --- the sync client's token stays off the command line ---------------------------------------------


@contextlib.contextmanager
def recording_api() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records each Authorization header and answers 404 `批次不存在`."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            seen.append(self.headers.get("Authorization", ""))
            body = json.dumps({"code": 404, "message": "批次不存在", "data": None}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    with http_server(Handler) as url:
        yield url, seen


def sync_cli(args: list[str], **env: str | None) -> Any:
    base: dict[str, str | None] = {"BATCHSYNC_JWT_SECRET": None, "BATCHSYNC_TOKEN": None,
                                   "BATCHSYNC_KAFKA_BOOTSTRAP": None, "BATCHSYNC_DATABASE_URL": None}
    return runner.invoke(cli_app, ["sync", *args], env={**base, **env})


def test_sync_refuses_a_token_on_the_command_line() -> None:
    with recording_api() as (url, seen):
        result = sync_cli(["7", "--api-url", url, "--token", "tok-on-argv"])
    assert result.exit_code == 2
    assert "BATCHSYNC_TOKEN" in result.stderr and "--token-file" in result.stderr
    assert seen == []
    assert "--token " not in runner.invoke(cli_app, ["sync", "--help"]).stdout


def test_sync_reads_its_token_from_a_file_or_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file\n")
    token_file.chmod(0o600)
    with recording_api() as (url, seen):
        from_file = sync_cli(["7", "--api-url", url, "--token-file", str(token_file)], BATCHSYNC_DATA_DIR=str(tmp_path))
        from_env = sync_cli(["7", "--api-url", url], BATCHSYNC_TOKEN="tok-from-env", BATCHSYNC_DATA_DIR=str(tmp_path))
    assert from_file.exit_code == 4 and "批次不存在" in from_file.stderr
    assert "readable by other users" not in from_file.stderr
    assert from_env.exit_code == 4
    assert seen == ["Bearer tok-from-file", "Bearer tok-from-env"]


def test_sync_warns_about_a_token_file_others_can_read(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok\n")
    token_file.chmod(0o644)
    with recording_api() as (url, _):
        result = sync_cli(["7", "--api-url", url, "--token-file", str(token_file)], BATCHSYNC_DATA_DIR=str(tmp_path))
    assert "readable by other users" in result.stderr

"""The HTTP source against a real JSON API on loopback: auth, Retry-After, resume without re-fetching
finished pages, the errors a misconfigured API gives, and the live connection test through the API."""

import asyncio
import time
from email.utils import formatdate

import pytest

from schemas.api import SourceSpec
from service.connectors.http.client import check_connection
from service.sync.errors import AuthFailed, ConnectRefused, ConnectTimeout, SourceFailed, TableMissing
from service.sync.model import Endpoint
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.harness import FIELDS, Context, Crash, Recorder, make_rows, normalized, spec_for, sync
from tests.support.api import api_client, api_settings, asyncpg_url, create_connection
from tests.support.builders import unique
from tests.support.http_api import PASSWORD, TOKEN, USER, ApiServer, serving
from tests.support.loopback import closed_port, silent_server

PAGE = {"type": "page", "pageParam": "page", "sizeParam": "size", "start": 1, "pageSize": 100}


@pytest.fixture
def reference(target_dsn, tmp_path):
    return PostgresCase(Context(pg_dsn=target_dsn, tmp_dir=tmp_path, kafka_bootstrap=""))


@pytest.fixture
def api():
    with serving(ApiServer(auth="basic")) as server:
        yield server


def endpoint(server: ApiServer, **params) -> Endpoint:
    base = {"pagination": PAGE, "recordsPath": "data.items", "auth": {"type": "basic", "username": USER,
                                                                       "password": PASSWORD}}
    return Endpoint(type="http", url=f"{server.url}/api", params=base | params)


async def test_basic_auth_and_every_type_reach_postgresql(api, reference):
    rows = make_rows(450)
    table = api.add(unique("src"), rows)
    target = await reference.create(table)
    result = await sync(spec_for((endpoint(api), SourceSpec(table=table)), target, table, chunk_size=200))
    assert result.records_written == 450
    assert normalized(await reference.read(target, table), FIELDS) == normalized(rows, FIELDS)


async def test_a_resumed_run_starts_at_the_page_it_stopped_in(api, reference):
    rows = make_rows(1000)
    table = api.add(unique("src"), rows)
    target = await reference.create(table)
    spec = spec_for((endpoint(api), SourceSpec(table=table)), target, table, chunk_size=250)
    with pytest.raises(Crash):
        await sync(spec, Recorder(crash_after=2))
    api.requests.clear()

    await sync(spec)

    pages = api.served(table)
    # describe() reads page 1 for the columns; then the run continues at page 6 (records 501-600),
    # which holds the first record after chunk 2, never fetching pages 2 to 5 again.
    assert pages[:3] == ["size=100&page=1", "size=100&page=6", "size=100&page=7"], pages
    assert not any(q.endswith(f"page={n}") for q in pages for n in range(2, 6))
    assert normalized(await reference.read(target, table), FIELDS) == normalized(rows, FIELDS)


async def test_a_resume_inside_a_page_skips_what_was_written(api, reference):
    rows = make_rows(700)
    table = api.add(unique("src"), rows)
    target = await reference.create(table)
    spec = spec_for((endpoint(api), SourceSpec(table=table)), target, table, chunk_size=130)
    with pytest.raises(Crash):
        await sync(spec, Recorder(crash_after=3))  # 390 records: page 4 was cut after 90
    await sync(spec)
    written = await reference.read(target, table)
    assert len(written) == 700
    assert normalized(written, FIELDS) == normalized(rows, FIELDS)


async def test_429_waits_for_retry_after_in_seconds_and_as_a_date(api, reference):
    table = api.add(unique("src"), make_rows(150))
    target = await reference.create(table)
    api.throttle, api.retry_after = 2, "1"
    started = time.monotonic()
    result = await sync(spec_for((endpoint(api), SourceSpec(table=table)), target, table))
    assert result.records_written == 150
    assert time.monotonic() - started >= 2.0
    assert api.throttle <= 0

    api.throttle, api.retry_after = 1, formatdate(time.time() + 2, usegmt=True)
    again = unique("tgt")
    started = time.monotonic()
    await sync(spec_for((endpoint(api), SourceSpec(table=table)), await reference.create(again), again))
    assert time.monotonic() - started >= 0.9  # an HTTP date has whole seconds


async def test_retry_after_is_bounded_and_retries_run_out(api, reference):
    table = api.add(unique("src"), make_rows(10))
    target = await reference.create(table)
    api.throttle, api.retry_after = 100, "3600"
    started = time.monotonic()
    with pytest.raises(SourceFailed) as error:
        await sync(spec_for((endpoint(api, maxRetries=2, maxRetryAfter=0.2), SourceSpec(table=table)), target,
                            table))
    assert time.monotonic() - started < 3
    assert error.value.reason == "接口限流，重试次数已用尽"


async def test_wrong_credentials_are_auth_failed_and_never_shown(api, reference):
    table = api.add(unique("src"), make_rows(5))
    target = await reference.create(table)
    wrong = endpoint(api, auth={"type": "basic", "username": USER, "password": "WRONG-pass-999"})
    with pytest.raises(AuthFailed) as error:
        await sync(spec_for((wrong, SourceSpec(table=table)), target, table))
    assert error.value.reason == "认证失败" and "WRONG-pass-999" not in str(error.value)
    bearer = endpoint(api, auth={"type": "bearer", "token": TOKEN})  # the server wants basic
    with pytest.raises(AuthFailed):
        await sync(spec_for((bearer, SourceSpec(table=table)), target, table))


async def test_bad_answers_are_clear_terminal_errors(api, reference):
    table = api.add(unique("src"), make_rows(5))
    target = await reference.create(table)
    with pytest.raises(TableMissing) as missing:
        await sync(spec_for((endpoint(api), SourceSpec(table="nothing_here")), target, table))
    assert missing.value.reason == "源表不存在：/api/nothing_here"
    with pytest.raises(SourceFailed) as path:
        await sync(spec_for((endpoint(api, recordsPath="data.rows"), SourceSpec(table=table)), target, table))
    assert path.value.reason == "接口响应中缺少记录路径：data.rows"
    text = Endpoint(type="http", url=f"{api.url}/text", params=endpoint(api).params)
    with pytest.raises(SourceFailed) as not_json:
        await sync(spec_for((text, SourceSpec(table=table)), target, table))
    assert not_json.value.reason == f"接口响应不是 JSON：/text/{table}"


async def test_a_flat_list_without_pagination(api, reference):
    rows = make_rows(120)
    table = api.add(unique("src"), rows)
    target = await reference.create(table)
    flat = Endpoint(type="http", url=f"{api.url}/flat", params={"auth": endpoint(api).params["auth"]})
    result = await sync(spec_for((flat, SourceSpec(table=table)), target, table, chunk_size=50))
    assert result.records_written == 120 and result.chunks == 3
    assert normalized(await reference.read(target, table), FIELDS) == normalized(rows, FIELDS)


async def test_refused_and_silent_hosts_fail_fast():
    with pytest.raises(ConnectRefused):
        await check_connection(Endpoint(type="http", url=f"http://127.0.0.1:{closed_port()}/"), 1.0)
    with silent_server() as port:
        started = time.monotonic()
        with pytest.raises(ConnectTimeout):
            await check_connection(Endpoint(type="http", url=f"http://127.0.0.1:{port}/"), 1.0)
        assert time.monotonic() - started < 2.5


async def test_connection_test_endpoint_answers_with_the_sync_reasons(api, state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn), connect_timeout_seconds=1)) as client:
        good = await create_connection(client, type="http", url=f"{api.url}/api", params=endpoint(api).params)
        wrong = await create_connection(client, type="http", url=f"{api.url}/api",
                                        params={"auth": {"type": "basic", "username": USER, "password": "nope"}})
        refused = await create_connection(client, type="http", url=f"http://127.0.0.1:{closed_port()}/api")
        answers = await asyncio.gather(*[client.post(f"/integration/connection/{c['id']}/test")
                                         for c in (good, wrong, refused)])
        with silent_server() as port:
            silent = await create_connection(client, type="http", url=f"http://127.0.0.1:{port}/api")
            started = time.monotonic()
            hung = await client.post(f"/integration/connection/{silent['id']}/test")
            elapsed = time.monotonic() - started
    assert answers[0].json() == {"code": 200, "message": "连接成功", "data": None}
    assert answers[1].json()["message"] == "连接失败：认证失败"
    assert answers[2].json()["message"] == "连接失败：连接被拒绝"
    assert hung.json()["message"] == "连接失败：连接超时" and elapsed < 2.5
    assert PASSWORD not in good["params"].__repr__()

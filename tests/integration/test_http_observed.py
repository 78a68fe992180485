"""Every HTTP request is counted under its route template and logged once, refusals included, and neither
the metrics nor the access line carry a token, a query string or a path a client made up."""

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import api_client, api_settings, asyncpg_url, bearer

QUERY_SECRET = "q-SECRET-4411"


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        yield client


async def requests_counted(client) -> dict[tuple[str, str, str], float]:
    response = await client.get("/metrics")  # open: no token
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.labels["method"], s.labels["route"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples
            if s.name == "batchsync_http_requests_total"}


async def test_requests_are_counted_under_their_route_template_refusals_included(client) -> None:
    before = await requests_counted(client)
    headers = bearer()
    assert (await client.get("/integration/batch/987654", headers=headers)).status_code == 404
    anonymous = await client.get("/integration/batch/987654", headers={"Authorization": ""})
    assert anonymous.status_code == 401  # refused by the guard, before routing
    assert (await client.get(f"/no/such/{QUERY_SECRET}")).status_code == 404
    after = await requests_counted(client)

    def moved(key: tuple[str, str, str]) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert moved(("GET", "/integration/batch/{id}", "404")) == 1
    assert moved(("GET", "/integration/batch/{id}", "401")) == 1
    assert moved(("GET", "unmatched", "404")) == 1
    assert not any(QUERY_SECRET in route or "987654" in route for _, route, _ in after)


async def test_one_access_line_per_request_without_token_or_query(client, caplog) -> None:
    headers = bearer(sub="alice")
    token = headers["Authorization"].split()[1]
    with caplog.at_level(logging.DEBUG, logger="batchsync.access"):
        await client.get("/integration/batch/list", params={"pageNum": 1, "token": QUERY_SECRET}, headers=headers)
        await client.get("/healthz")
    lines = [r for r in caplog.records if r.name == "batchsync.access"]
    listed, probe = lines
    assert (listed.levelno, listed.method, listed.path, listed.status, listed.user) == (
        logging.INFO, "GET", "/integration/batch/list", 200, "alice")
    assert probe.levelno == logging.DEBUG and probe.path == "/healthz"  # probes stay out of INFO
    for record in lines:
        assert token not in record.getMessage() and QUERY_SECRET not in record.getMessage()
        assert QUERY_SECRET not in str(record.__dict__) and token not in str(record.__dict__)


async def test_a_path_cannot_forge_a_log_line(client, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="batchsync.access"):
        await client.get("/no/such%0A2026-01-01 INFO batchsync.access: GET /admin 200")
    (line,) = [r for r in caplog.records if r.name == "batchsync.access"]
    assert "\n" not in line.getMessage() and "\\n2026" in line.getMessage()

"""Connection inputs that used to reach a driver and come back as 500/503: refused or mapped instead."""

import pytest

from tests.support.api import api_client, api_settings, unique


@pytest.mark.parametrize("headers", [{"X-Key": "é"}, {"X-Key": "a\r\nInjected: 1"}, {"Bad Name": "v"}])
async def test_http_headers_that_http_cannot_send_are_a_400(state_dsn, headers):
    async with api_client(api_settings(state_dsn)) as client:
        response = await client.post("/integration/connection", json={
            "name": unique("http"), "type": "http", "url": "http://127.0.0.1:9/x", "params": {"headers": headers}})
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("参数错误：params.headers")


async def test_a_file_name_too_long_fails_the_test_not_the_database(state_dsn, tmp_path):
    async with api_client(api_settings(state_dsn)) as client:
        created = await client.post("/integration/connection", json={
            "name": unique("jsonl"), "type": "jsonl", "params": {"path": str(tmp_path / ("a" * 300 + ".jsonl"))}})
        assert created.status_code == 200, created.text
        response = await client.post(f"/integration/connection/{created.json()['data']['id']}/test")
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("连接失败：文件读写失败")

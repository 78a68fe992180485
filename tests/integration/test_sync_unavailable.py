"""A broker that is down answers 503 within seconds, and leaves no run behind to block the batch."""

import time

from service.auth import mint_token
from tests.support.builders import unique
from tests.support.loopback import closed_port, silent_server
from tests.support.sql import fetchval
from tests.support.stack import Stack, api_client, create_batch, stack_settings


async def _assert_503_fast(state_dsn: str, bootstrap: str) -> None:
    settings = stack_settings(state_dsn, bootstrap, kafka_request_timeout_ms=1500)
    async with api_client(settings) as client:
        stack = Stack(settings, client, mint_token(settings, "tester", ["*:*:*"]))
        created = await client.post("/integration/connection", headers=stack.headers(),
                                    json={"name": unique("pg"), "type": "postgresql", "url": state_dsn})
        connection_id = created.json()["data"]["id"]
        batch_id = await create_batch(stack, unique("batch"), connection_id, connection_id, {"table": "runs"},
                                      {"table": "runs_copy", "mode": "append"})
        started = time.monotonic()
        response = await client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
        elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json() == {"code": 503, "message": "服务暂不可用：消息队列", "data": None}
    assert elapsed < 8, f"answered after {elapsed:.1f}s"
    assert await fetchval(state_dsn, "SELECT count(*) FROM runs WHERE batch_id = $1", batch_id) == 0
    outcome = await fetchval(state_dsn, "SELECT outcome->>'error_code' FROM request_ledger WHERE batch_id = $1",
                             batch_id)
    assert outcome == "BROKER_UNAVAILABLE", "a request the broker took after all is answered, never run"


async def test_a_refusing_broker_answers_503_at_once(state_dsn):
    await _assert_503_fast(state_dsn, f"127.0.0.1:{closed_port()}")


async def test_a_silent_broker_answers_503_within_seconds(state_dsn):
    with silent_server() as port:
        await _assert_503_fast(state_dsn, f"127.0.0.1:{port}")

"""The worked examples of docs/events.md, run as another service would run them: a confluent-kafka
script and a kcat shell script publish a request to the real stack and print the correlated reply."""

import asyncio
import json
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support.builders import create_empty_like_orders, create_orders, table_fingerprint, unique
from tests.support.kcat import SKIP_REASON, kcat_env
from tests.support.sql import run_row
from tests.support.stack import create_batch, create_connection, running_stack, stack_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.fixture(scope="module")
async def stack(state_dsn, broker):
    async with running_stack(stack_settings(state_dsn, broker.bootstrap)) as running:
        yield running


async def new_batch(stack, source_dsn: str, target_dsn: str, rows: int = 300) -> tuple[int, str]:
    table = unique("orders")
    await create_orders(source_dsn, table, rows)
    await create_empty_like_orders(target_dsn, table)
    batch_id = await create_batch(
        stack, unique("batch"), await create_connection(stack, unique("src"), source_dsn),
        await create_connection(stack, unique("tgt"), target_dsn), {"table": table},
        {"table": table, "mode": "upsert", "keyColumns": ["id"]})
    return batch_id, table


async def run(args: list[str], env: dict[str, str], within: float = 90) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), within)
    return process.returncode or 0, out.decode(), err.decode()


async def check_reply(stack, state_dsn, source_dsn, target_dsn, table, code, out, err, service):
    assert code == 0, (out, err)
    reply = json.loads(out.strip().splitlines()[-1])
    assert (reply["eventType"], reply["success"], reply["recordsSynced"]) == ("BatchSyncCompleted", True, 300)
    assert await table_fingerprint(target_dsn, table) == await table_fingerprint(source_dsn, table)
    row = await run_row(state_dsn, reply["runId"])
    assert (row["trigger"], row["requested_by"], row["status"]) == ("event", service, "SUCCESS")


async def test_confluent_kafka_script_gets_its_reply(stack, state_dsn, source_dsn, target_dsn, broker):
    batch_id, table = await new_batch(stack, source_dsn, target_dsn)
    env = {"BOOTSTRAP": broker.bootstrap, "BATCH_ID": str(batch_id), "PREFIX": stack.settings.topic_prefix,
           "SERVICE": "billing-service", "TIMEOUT": "60", "PATH": "/usr/bin:/bin"}
    code, out, err = await run([sys.executable, str(EXAMPLES / "request_reply_confluent.py")], env)
    await check_reply(stack, state_dsn, source_dsn, target_dsn, table, code, out, err, "billing-service")

    request_id = str(uuid.uuid4())
    first = await run([sys.executable, str(EXAMPLES / "request_reply_confluent.py")], {**env, "REQUEST_ID": request_id})
    again = await run([sys.executable, str(EXAMPLES / "request_reply_confluent.py")], {**env, "REQUEST_ID": request_id})
    assert json.loads(first[1])["runId"] == json.loads(again[1])["runId"], "same requestId, same run"


async def test_kcat_script_gets_its_reply(stack, state_dsn, source_dsn, target_dsn, broker, tmp_path):
    env = kcat_env(str(tmp_path))
    if env is None:
        pytest.skip(SKIP_REASON)
    batch_id, table = await new_batch(stack, source_dsn, target_dsn)
    reply_topic = f"{stack.settings.topic_prefix}.replies.ops"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(reply_topic, 1, 1)])
    finally:
        await admin.close()
    env.update({"BOOTSTRAP": broker.bootstrap, "BATCH_ID": str(batch_id), "PREFIX": stack.settings.topic_prefix,
                "REPLY_TOPIC": reply_topic, "SERVICE": "ops-shell", "TIMEOUT": "60"})
    code, out, err = await run(["sh", str(EXAMPLES / "request_reply_kcat.sh")], env)
    await check_reply(stack, state_dsn, source_dsn, target_dsn, table, code, out, err, "ops-shell")

"""Runs of one batch never overlap; runs of different batches proceed in parallel, even when their
requests share a partition (all requests here go through a one-partition topic)."""

import asyncio
import json
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.stack import create_batch, create_connection, running_stack, stack_settings


@pytest.fixture(scope="module")
async def stack(state_dsn, broker):
    settings = stack_settings(state_dsn, broker.bootstrap, requested_partitions=1, worker_concurrency=4)
    async with running_stack(settings, projector=False) as running:
        yield running


async def batch_of(stack, source_dsn, target_dsn, rows: int, chunk_size: int) -> int:
    table = unique("orders")
    await create_orders(source_dsn, table, rows)
    await create_empty_like_orders(target_dsn, table)
    return await create_batch(
        stack, unique("batch"), await create_connection(stack, unique("src"), source_dsn),
        await create_connection(stack, unique("tgt"), target_dsn), {"table": table},
        {"table": table, "mode": "overwrite"}, chunkSize=chunk_size,
    )


async def request(stack, bootstrap: str, batch_ids: list[int]) -> list[str]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    request_ids = []
    try:
        for batch_id in batch_ids:
            request_id = str(uuid.uuid4())
            request_ids.append(request_id)
            body = {"eventType": "BatchSyncRequested", "correlationId": request_id, "batchId": batch_id,
                    "producer": "scheduler-test", "requestId": request_id, "requestedBy": "scheduler",
                    "trigger": "schedule"}
            await producer.send_and_wait(stack.settings.topics.requested, json.dumps(body).encode(),
                                         key=str(batch_id).encode())
    finally:
        await producer.stop()
    return request_ids


async def finished_runs(state_dsn: str, request_ids: list[str], within: float = 60) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(state_dsn)
    try:
        async with asyncio.timeout(within):
            while True:
                rows = await conn.fetch("SELECT request_id, batch_id, status, started_at, finished_at FROM runs "
                                        "WHERE request_id = ANY($1::text[])", request_ids)
                if len(rows) == len(request_ids) and all(r["status"] == "SUCCESS" for r in rows):
                    return sorted(rows, key=lambda r: request_ids.index(r["request_id"]))
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def test_runs_of_one_batch_queue_while_other_batches_proceed(stack, state_dsn, source_dsn, target_dsn, broker):
    slow = await batch_of(stack, source_dsn, target_dsn, 60_000, 500)
    quick = await batch_of(stack, source_dsn, target_dsn, 50, 500)

    request_ids = await request(stack, broker.bootstrap, [slow, slow, quick])
    first, second, small = await finished_runs(state_dsn, request_ids)

    assert second["started_at"] >= first["finished_at"], "two runs of one batch overlapped"
    assert small["finished_at"] < first["finished_at"], "the other batch waited behind the slow one"

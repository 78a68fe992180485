"""A target frozen with a pipelined upsert merge in flight (issue 11): the attempt lets go of the merge after
`connect_timeout` and of the frozen server at once, so the I/O timeout becomes a retry during the freeze, not
after the thaw, and the run finishes exact. The freeze is timed by the engine's own progress (right after a
chunk's merge started), so this path is taken every time, whatever the machine's load."""

import asyncio

import pytest
from prometheus_client import REGISTRY as METRICS

from schemas.api import WriteMode
from service.connectors.registry import REGISTRY
from service.sync.engine import execute
from service.sync.model import ProgressUpdate
from service.sync.retry import RetryPolicy
from tests.integration.test_engine_sync import Recorder, same_rows, source_table, spec_for, target_like
from tests.support.own_postgres import OwnPostgres, own_postgres

pytestmark = pytest.mark.slow

IO_TIMEOUT = CONNECT_TIMEOUT = 2.0
FREEZE_SECONDS = 10


@pytest.fixture(scope="module")
def server():
    with own_postgres() as running:
        yield running


def retried(error_code: str) -> float:
    return METRICS.get_sample_value("batchsync_transient_retries_total", {"error_code": error_code}) or 0.0


async def test_a_merge_in_flight_on_a_frozen_target_does_not_hold_the_retry(server: OwnPostgres, source_dsn):
    src = await source_table(source_dsn, 3_000)
    tgt = await target_like(server.dsn)
    spec = spec_for(source_dsn, server.dsn, tgt, table=src, mode=WriteMode.UPSERT, keys=["id"], chunk_size=100)
    clock = asyncio.get_running_loop().time
    before = retried("TARGET_ERROR")
    seen: dict[str, float] = {}

    async def freeze_for_a_while() -> None:
        server.freeze()
        seen["frozen"] = clock()
        try:
            while clock() - seen["frozen"] < FREEZE_SECONDS:
                if "retried" not in seen and retried("TARGET_ERROR") > before:
                    seen["retried"] = clock() - seen["frozen"]
                await asyncio.sleep(0.02)
        finally:
            server.thaw()

    freezing: list[asyncio.Task[None]] = []

    async def after_chunk(update: ProgressUpdate) -> None:
        if update.chunk == 5 and not freezing:  # chunk 5 is staged and its merge just started on the 2nd connection
            freezing.append(asyncio.create_task(freeze_for_a_while()))
            await asyncio.sleep(0)  # frozen before the engine goes on

    try:
        result = await execute(spec, Recorder(after_chunk), connectors=REGISTRY, connect_timeout=CONNECT_TIMEOUT,
                               io_timeout=IO_TIMEOUT, policy=RetryPolicy(budget=60))
    finally:
        await asyncio.gather(*freezing)
        server.thaw()

    assert "retried" in seen, f"no retry during the {FREEZE_SECONDS} s freeze: the attempt waited for the thaw"
    assert seen["retried"] < IO_TIMEOUT + CONNECT_TIMEOUT + 2, seen
    assert result.records_written == 3_000
    await same_rows(source_dsn, src, server.dsn, tgt)

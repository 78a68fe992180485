"""Recovery on real PostgreSQL: resume after a crash, a retry chain, a dropped target connection
retried from the checkpoint, cancellation, and overwrite as seen by a concurrent reader."""

import asyncio
import logging
import uuid
from dataclasses import replace

import pytest

from schemas.api import WriteMode
from service.connectors.registry import REGISTRY
from service.sync.engine import execute
from service.sync.errors import RunCancelled
from service.sync.model import ProgressUpdate
from tests.integration.test_engine_sync import (
    SOURCE_FILL,
    Recorder,
    checkpoints_left,
    crash_after,
    pg,
    same_rows,
    source_table,
    spec_for,
    target_like,
)


@pytest.mark.parametrize("mode", [WriteMode.APPEND, WriteMode.OVERWRITE])
async def test_rerun_after_a_crash_resumes_from_the_checkpoint(
    source_dsn: str, target_dsn: str, mode: WriteMode
) -> None:
    src = await source_table(source_dsn, 1000)
    tgt = await target_like(target_dsn)
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=mode, chunk_size=100)
    await crash_after(3, spec, Recorder())

    observer = Recorder()
    result = await execute(spec, observer, connectors=REGISTRY, connect_timeout=5)

    await same_rows(source_dsn, src, target_dsn, tgt)
    assert observer.starts[0][0] == 3
    assert [u.chunk for u in observer.updates] == list(range(4, 11))
    assert (result.records_read, result.chunks, result.resumed_from_chunk) == (1000, 10, 3)
    assert await checkpoints_left(target_dsn, spec.checkpoint_key) == 0


async def test_retry_run_continues_its_predecessors_checkpoint(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 500)
    tgt = await target_like(target_dsn)
    failed = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.UPSERT, keys=["id"], chunk_size=100)
    await crash_after(2, failed, Recorder())
    retry = replace(failed, run_id=uuid.uuid4())

    observer = Recorder()
    result = await execute(retry, observer, connectors=REGISTRY, connect_timeout=5)

    await same_rows(source_dsn, src, target_dsn, tgt)
    assert observer.starts[0][0] == 2
    assert observer.updates[0].records_written == 300
    assert result.records_written == 500


@pytest.mark.parametrize("side", ["target", "source"])
async def test_dropped_connection_is_retried_without_rereading(
    source_dsn: str, target_dsn: str, side: str, caplog: pytest.LogCaptureFixture
) -> None:
    src = await source_table(source_dsn, 1000)
    tgt = await target_like(target_dsn)
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, chunk_size=100)
    killed: list[int] = []

    async def kill_backend(update: ProgressUpdate) -> None:
        if update.chunk == 2 and not killed:
            async with pg(target_dsn if side == "target" else source_dsn) as conn:
                killed.extend(
                    await conn.fetchval(
                        "SELECT array_agg(pg_terminate_backend(pid)::int) FROM pg_stat_activity"
                        " WHERE application_name = $1 AND datname = current_database()",
                        f"batchsync:{side}",
                    )
                )

    observer = Recorder(kill_backend)
    with caplog.at_level(logging.DEBUG, logger="service"):
        result = await execute(spec, observer, connectors=REGISTRY, connect_timeout=5)

    await same_rows(source_dsn, src, target_dsn, tgt)
    assert killed and set(killed) == {1}  # the run's backend (and any parked idle one) terminated
    assert [u.chunk for u in observer.updates] == list(range(1, 11))
    assert result.records_written == 1000
    messages = [r.getMessage() for r in caplog.records]
    retry, resumed = next((i, m) for i, m in enumerate(messages) if "resumes after chunk" in m)
    committed = int(resumed.rsplit(" ", 1)[-1])
    after_retry = [m for m in messages[retry:] if m.startswith("source chunk after")]
    assert committed >= 2
    assert after_retry[0].startswith(f"source chunk after {committed * 100} "), after_retry
    assert sum(m.startswith("source chunk after None ") for m in messages) == 1


async def test_cancel_leaves_an_overwritten_target_untouched(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 600)
    tgt = await target_like(target_dsn)
    async with pg(target_dsn) as conn:
        await conn.execute(SOURCE_FILL.format(t=tgt, lo=9001, hi=9050))
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.OVERWRITE, chunk_size=100)
    observer = Recorder()

    async def cancel_at_two(update: ProgressUpdate) -> None:
        observer.cancel = update.chunk == 2

    observer.hook = cancel_at_two
    with pytest.raises(RunCancelled):
        await execute(spec, observer, connectors=REGISTRY, connect_timeout=5)

    assert [u.chunk for u in observer.updates] == [1, 2]
    async with pg(target_dsn) as conn:
        assert await conn.fetchval(f"SELECT count(*) FROM {tgt} WHERE id BETWEEN 9001 AND 9050") == 50
        assert await conn.fetchval(f"SELECT count(*) FROM {tgt}") == 50
        stage = f"_batchsync_stage_{str(spec.checkpoint_key).replace('-', '')[:20]}%"
        assert await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE $1", stage) == 0
    assert await checkpoints_left(target_dsn, spec.checkpoint_key) == 0


async def test_overwrite_readers_see_the_old_or_the_new_rows(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 2000)
    tgt = await target_like(target_dsn)
    async with pg(target_dsn) as conn:
        await conn.execute(SOURCE_FILL.format(t=tgt, lo=9001, hi=9500))
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.OVERWRITE, chunk_size=100)
    seen: list[int] = []
    done = asyncio.Event()

    async def reader() -> None:
        async with pg(target_dsn) as conn:
            while not done.is_set():
                seen.append(await conn.fetchval(f"SELECT count(*) FROM {tgt}"))
            seen.append(await conn.fetchval(f"SELECT count(*) FROM {tgt}"))

    async def pause(update: ProgressUpdate) -> None:
        await asyncio.sleep(0.005)

    polling = asyncio.create_task(reader())
    try:
        await execute(spec, Recorder(pause), connectors=REGISTRY, connect_timeout=5)
    finally:
        done.set()
        await polling

    await same_rows(source_dsn, src, target_dsn, tgt)
    assert set(seen) <= {500, 2000}
    assert seen.count(500) > 10 and seen[-1] == 2000


async def test_an_execution_that_finds_its_chunk_already_written_stops_without_publishing(
    source_dsn: str, target_dsn: str
) -> None:
    """Two executions of one run (the first lost its lease but still runs): the one that finds its next chunk
    already written must stop, not skip ahead and publish a partial overwrite."""
    from service.sync.errors import CheckpointTaken

    src = await source_table(source_dsn, 1000)
    tgt = await target_like(target_dsn)
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode="overwrite", chunk_size=100)
    await crash_after(3, spec, Recorder())

    class Racer(Recorder):
        """Lets the other execution write chunk 4 right before this one writes it."""

        async def on_start(self, resumed_from_chunk: int, total_estimate: int | None) -> None:
            await super().on_start(resumed_from_chunk, total_estimate)
            await crash_after(4, spec, Recorder())

    with pytest.raises(CheckpointTaken):
        await execute(spec, Racer(), connectors=REGISTRY, connect_timeout=5)
    async with pg(target_dsn) as conn:
        assert await conn.fetchval(f"SELECT count(*) FROM {tgt}") == 0, "nothing may be published"
    await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5)
    await same_rows(source_dsn, src, target_dsn, tgt)

"""The PostgreSQL overwrite of a small table without a staging table, on real PostgreSQL: a one-chunk run holds
its chunk and publishes it at the end in one transaction (DELETE + COPY, no DDL); readers see the old rows or
the new ones, never an empty table, even from a snapshot older than the swap (which TRUNCATE would break);
a run that dies while holding publishes nothing; a second execution of the run is refused at the swap; a
first chunk too big to hold goes through the staging table."""

import asyncio

import pytest

from schemas.api import WriteMode
from service.connectors.postgresql import overwrite
from service.connectors.registry import REGISTRY
from service.connectors.sql.target import stage_parts
from service.sync.engine import execute
from service.sync.errors import CheckpointTaken
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


async def stages(target_dsn: str, spec) -> int:
    """The run's staging tables (other tests' cancelled runs may leave theirs in the shared database)."""
    _, name = stage_parts(spec.target.table, str(spec.checkpoint_key))
    async with pg(target_dsn) as conn:
        return int(await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE $1", f"{name}%"))


async def test_a_one_chunk_overwrite_needs_no_staging_table(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 80)
    tgt = await target_like(target_dsn)
    async with pg(target_dsn) as conn:
        await conn.execute(SOURCE_FILL.format(t=tgt, lo=9001, hi=9030))
    seen: list[int] = []

    async def look(_: ProgressUpdate) -> None:
        seen.append(await stages(target_dsn, spec))

    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.OVERWRITE, chunk_size=100)
    result = await execute(spec, Recorder(look), connectors=REGISTRY, connect_timeout=5)

    assert (result.records_written, result.chunks) == (80, 1)
    assert seen == [0] and await stages(target_dsn, spec) == 0
    await same_rows(source_dsn, src, target_dsn, tgt)
    assert await checkpoints_left(target_dsn, spec.checkpoint_key) == 0


async def test_readers_see_the_old_or_the_new_rows_even_from_an_older_snapshot(
    source_dsn: str, target_dsn: str
) -> None:
    src = await source_table(source_dsn, 60)
    tgt = await target_like(target_dsn)
    async with pg(target_dsn) as conn:
        await conn.execute(SOURCE_FILL.format(t=tgt, lo=9001, hi=9040))
    counts: list[int] = []
    done = asyncio.Event()

    async def reader() -> None:
        async with pg(target_dsn) as conn:
            await conn.execute("SET statement_timeout = '2s'")  # a reader blocked behind the swap fails here
            while not done.is_set():
                counts.append(await conn.fetchval(f"SELECT count(*) FROM {tgt}"))
                await asyncio.sleep(0)

    async with pg(target_dsn) as old:
        snapshot = old.transaction(isolation="repeatable_read")
        await snapshot.start()
        assert await old.fetchval(f"SELECT count(*) FROM {tgt}") == 40  # the snapshot is taken here
        polling = asyncio.create_task(reader())
        try:
            for _ in range(5):
                spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.OVERWRITE, chunk_size=100)
                # a swap that waited for the old snapshot (TRUNCATE's ACCESS EXCLUSIVE) would time out here
                await asyncio.wait_for(execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5), 20)
        finally:
            done.set()
            await polling
        assert await old.fetchval(f"SELECT count(*) FROM {tgt}") == 40, "an older snapshot still sees the old rows"
        await snapshot.rollback()

    assert set(counts) <= {40, 60} and counts[-1] == 60
    await same_rows(source_dsn, src, target_dsn, tgt)


async def test_a_run_that_dies_while_holding_publishes_nothing(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 50)
    tgt = await target_like(target_dsn)
    async with pg(target_dsn) as conn:
        await conn.execute(SOURCE_FILL.format(t=tgt, lo=9001, hi=9010))
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.OVERWRITE, chunk_size=100)
    await crash_after(1, spec)
    async with pg(target_dsn) as conn:
        assert await conn.fetchval(f"SELECT count(*) FROM {tgt}") == 10
    assert await checkpoints_left(target_dsn, spec.checkpoint_key) == 0

    observer = Recorder()
    await execute(spec, observer, connectors=REGISTRY, connect_timeout=5)
    assert observer.starts[0][0] == 0  # nothing held was durable: the run starts again
    await same_rows(source_dsn, src, target_dsn, tgt)


async def test_a_second_execution_of_the_run_is_refused_at_the_swap(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 50)
    tgt = await target_like(target_dsn)
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.OVERWRITE, chunk_size=100)

    async def other_execution_first(_: ProgressUpdate) -> None:  # the run's new owner, while this one holds
        await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5)
        async with pg(target_dsn) as conn:
            await conn.execute(f"DELETE FROM {tgt} WHERE id = 1")  # a later writer's change, not to be undone

    with pytest.raises(CheckpointTaken):
        await execute(spec, Recorder(other_execution_first), connectors=REGISTRY, connect_timeout=5)
    async with pg(target_dsn) as conn:
        assert await conn.fetchval(f"SELECT count(*) FROM {tgt}") == 49, "the held rows were not published again"


async def test_a_first_chunk_too_big_to_hold_is_staged(
    source_dsn: str, target_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overwrite, "HOLD_BYTES", 256)
    src = await source_table(source_dsn, 90)
    tgt = await target_like(target_dsn)
    seen: list[int] = []

    async def look(_: ProgressUpdate) -> None:
        seen.append(await stages(target_dsn, spec))

    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.OVERWRITE, chunk_size=100)
    result = await execute(spec, Recorder(look), connectors=REGISTRY, connect_timeout=5)
    assert result.records_written == 90
    assert seen == [1] and await stages(target_dsn, spec) == 0
    await same_rows(source_dsn, src, target_dsn, tgt)

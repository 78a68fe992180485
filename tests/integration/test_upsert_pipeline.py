"""The pipelined PostgreSQL upsert on real PostgreSQL: chunk k merged on a second connection while chunk k+1
is staged. Every row changed lands once; a run cancelled with a merge in flight keeps that chunk and resumes
after it; a merge the target refuses fails the run without its checkpoint; the staging tables are gone at
the end; a one-chunk run never opens the second connection."""


import pytest

from schemas.api import WriteMode
from service.connectors.registry import REGISTRY
from service.connectors.sql.target import stage_parts
from service.sync.engine import execute
from service.sync.errors import SyncError
from service.sync.model import ProgressUpdate
from tests.integration.test_engine_sync import (
    CHECKPOINTS,
    Recorder,
    checkpoints_left,
    crash_after,
    pg,
    same_rows,
    source_table,
    spec_for,
    target_like,
    unique,
)
from tests.support.databases import ADMIN_DSN, dsn_for

STAGES_LEFT = "SELECT count(*) FROM pg_class WHERE relname LIKE $1"


def stages_of(spec) -> str:
    """The LIKE pattern of the run's pipelined staging tables (other tests may leave theirs in the database)."""
    _, name = stage_parts(spec.target.table, str(spec.checkpoint_key))
    return f"{name}_u_"


async def test_every_changed_row_is_merged_once(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 1000)
    tgt = await target_like(target_dsn)
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.UPSERT, keys=["id"], chunk_size=100)
    await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5)
    async with pg(target_dsn) as conn:
        await conn.execute(f"UPDATE {tgt} SET name = 'old', amount = amount + 1")  # every row now differs
    again = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.UPSERT, keys=["id"], chunk_size=100)
    result = await execute(again, Recorder(), connectors=REGISTRY, connect_timeout=5)

    assert (result.records_written, result.chunks) == (1000, 10)
    await same_rows(source_dsn, src, target_dsn, tgt)
    async with pg(target_dsn) as conn:
        assert await conn.fetchval(f"SELECT count(*) FROM {tgt}") == 1000
        assert await conn.fetchval(STAGES_LEFT, stages_of(again)) == 0
        assert await conn.fetchval(f"SELECT chunk FROM {CHECKPOINTS} WHERE checkpoint_key = $1",
                                   again.checkpoint_key) == 10


async def test_a_cancelled_run_keeps_the_merge_in_flight_and_resumes_after_it(
    source_dsn: str, target_dsn: str
) -> None:
    src = await source_table(source_dsn, 800)
    tgt = await target_like(target_dsn)
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.UPSERT, keys=["id"], chunk_size=100)
    await crash_after(4, spec)  # chunk 4 is staged and its merge is in flight on the second connection
    async with pg(target_dsn) as conn:
        assert await conn.fetchval(f"SELECT chunk FROM {CHECKPOINTS} WHERE checkpoint_key = $1",
                                   spec.checkpoint_key) == 4
        assert await conn.fetchval(f"SELECT count(*) FROM {tgt}") == 400

    observer = Recorder()
    result = await execute(spec, observer, connectors=REGISTRY, connect_timeout=5)
    assert observer.starts[0][0] == 4
    assert result.records_written == 800
    await same_rows(source_dsn, src, target_dsn, tgt)
    async with pg(target_dsn) as conn:
        assert await conn.fetchval(STAGES_LEFT, stages_of(spec)) == 0
    assert await checkpoints_left(target_dsn, spec.checkpoint_key) == 0  # finished


async def test_a_refused_merge_fails_the_run_without_its_checkpoint(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 500)
    tgt = await target_like(target_dsn)
    async with pg(target_dsn) as conn:  # rows 301.. break a constraint: chunk 4 is the first merge refused
        await conn.execute(f"ALTER TABLE {tgt} ADD CONSTRAINT small_ids CHECK (id <= 300)")
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.UPSERT, keys=["id"], chunk_size=100)
    with pytest.raises(SyncError):
        await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5)
    async with pg(target_dsn) as conn:
        assert await conn.fetchval(f"SELECT chunk FROM {CHECKPOINTS} WHERE checkpoint_key = $1",
                                   spec.checkpoint_key) == 3
        assert await conn.fetchval(f"SELECT max(id) FROM {tgt}") == 300


async def test_the_second_connection_is_opened_for_a_second_chunk_only(source_dsn: str) -> None:
    src = await source_table(source_dsn, 250)
    name = unique("bs_pipeline")
    async with pg(ADMIN_DSN) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    target_dsn = dsn_for(name)  # a database of its own: no parked connection of another test counts here
    try:
        tgt = await target_like(target_dsn)
        backends: list[int] = []

        async def count_backends(_: ProgressUpdate) -> None:
            async with pg(target_dsn) as conn:
                backends.append(await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'batchsync:target' "
                    "AND datname = current_database()"))

        for chunk_size in (1000, 100):  # one chunk; then three
            spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.UPSERT, keys=["id"],
                            chunk_size=chunk_size)
            await execute(spec, Recorder(count_backends), connectors=REGISTRY, connect_timeout=5)
            await same_rows(source_dsn, src, target_dsn, tgt)
    finally:
        async with pg(ADMIN_DSN) as admin:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    assert backends == [1, 1, 2, 2]

"""execute() end to end on real PostgreSQL: the three write modes, mapping pushdown, query sources,
key-less tables and incremental sync. Helpers here are shared by the other engine test modules."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from schemas.api import MappingEntry, SourceSpec, TargetSpec, WriteMode
from schemas.messages import WRITE_REFUSED
from service.connectors.postgresql.target import CHECKPOINTS
from service.connectors.registry import REGISTRY
from service.sync.engine import execute
from service.sync.errors import AccessDenied
from service.sync.model import Endpoint, ProgressUpdate, RunSpec
from service.sync.retry import RetryPolicy

SOURCE_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount numeric(12,2),
    ts timestamptz, flag boolean, data jsonb, updated_at timestamptz NOT NULL)"""
SOURCE_FILL = """INSERT INTO {t} SELECT g, 'name ' || g, g * 1.25, '2024-01-01'::timestamptz + g * interval '1 min',
    g % 2 = 0, jsonb_build_object('g', g), '2024-01-01'::timestamptz + g * interval '1 s'
    FROM generate_series({lo}, {hi}) g"""


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


class Recorder:
    """A RunObserver that records what the engine tells it and can run a hook after each chunk."""

    def __init__(self, hook: Callable[[ProgressUpdate], Awaitable[None]] | None = None) -> None:
        self.starts: list[tuple[int, int | None]] = []
        self.updates: list[ProgressUpdate] = []
        self.phases: list[str] = []
        self.hook = hook
        self.cancel = False

    async def on_start(self, resumed_from_chunk: int, total_estimate: int | None) -> None:
        self.starts.append((resumed_from_chunk, total_estimate))

    async def on_chunk(self, update: ProgressUpdate) -> None:
        self.updates.append(update)
        if self.hook is not None:
            await self.hook(update)

    async def on_phase(self, update: ProgressUpdate) -> None:
        self.phases.append(update.phase)

    def cancel_requested(self) -> bool:
        return self.cancel


async def crash_after(chunk: int, spec, observer: Recorder | None = None) -> None:
    """Run until `chunk` is durable (told to the observer), then kill the engine task the way a dying worker
    would."""
    observer = observer or Recorder()
    reached = asyncio.Event()

    async def stall(update: ProgressUpdate) -> None:
        if update.chunk == chunk:
            reached.set()
            await asyncio.Event().wait()

    observer.hook = stall
    task = asyncio.create_task(execute(spec, observer, connectors=REGISTRY, connect_timeout=5))
    await asyncio.wait_for(reached.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def spec_for(
    source_dsn: str,
    target_dsn: str,
    target_table: str,
    *,
    table: str | None = None,
    query: str | None = None,
    cursor: str | None = None,
    mode: WriteMode = WriteMode.APPEND,
    keys: list[str] | None = None,
    mapping: list[dict[str, Any]] | None = None,
    chunk_size: int = 100,
    checkpoint_key: uuid.UUID | None = None,
    high_water_mark: Any = None,
) -> RunSpec:
    run_id = uuid.uuid4()
    return RunSpec(
        run_id=run_id,
        checkpoint_key=checkpoint_key or run_id,
        batch_id=1,
        source_endpoint=Endpoint("postgresql", url=source_dsn),
        source=SourceSpec(table=table, query=query, cursor_column=cursor),
        target_endpoint=Endpoint("postgresql", url=target_dsn),
        target=TargetSpec(table=target_table, mode=mode, key_columns=keys),
        mapping=[MappingEntry.model_validate(m) for m in mapping] if mapping else None,
        chunk_size=chunk_size,
        high_water_mark=high_water_mark,
    )


@contextlib.asynccontextmanager
async def pg(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def source_table(dsn: str, rows: int, *, start: int = 1, name: str | None = None) -> str:
    name = name or unique("src")
    async with pg(dsn) as conn:
        await conn.execute(SOURCE_DDL.format(t=name))
        await conn.execute(SOURCE_FILL.format(t=name, lo=start, hi=start + rows - 1))
    return name


async def target_like(dsn: str, name: str | None = None) -> str:
    name = name or unique("tgt")
    async with pg(dsn) as conn:
        await conn.execute(SOURCE_DDL.format(t=name))
    return name


async def digest(dsn: str, sql: str) -> tuple[int, str]:
    """Count and md5 of the rows of `sql` (which must order its rows)."""
    async with pg(dsn) as conn:
        row = await conn.fetchrow(f"SELECT count(*) AS n, md5(string_agg(t::text, ',')) AS h FROM ({sql}) t")
    return row["n"], row["h"]


async def same_rows(source_dsn: str, source: str, target_dsn: str, target: str) -> tuple[int, str]:
    want = await digest(source_dsn, f"SELECT * FROM {source} ORDER BY id")
    got = await digest(target_dsn, f"SELECT * FROM {target} ORDER BY id")
    assert got == want
    return got


async def checkpoints_left(target_dsn: str, key: uuid.UUID) -> int:
    """Checkpoints a resumed run would continue from (a finished one only says: write nothing again)."""
    async with pg(target_dsn) as conn:
        return await conn.fetchval(f"SELECT count(*) FROM {CHECKPOINTS} WHERE checkpoint_key = $1 "
                                   """AND NOT extra @> '{"finished": true}'""", key)


async def test_append_copies_every_row_in_chunks(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 1000)
    tgt = await target_like(target_dsn)
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, chunk_size=300)
    observer = Recorder()

    result = await execute(spec, observer, connectors=REGISTRY, connect_timeout=5)

    assert (await same_rows(source_dsn, src, target_dsn, tgt))[0] == 1000
    assert observer.starts == [(0, 1000)]
    assert [(u.chunk, u.records_read, u.records_written) for u in observer.updates] == [
        (1, 300, 300), (2, 600, 600), (3, 900, 900), (4, 1000, 1000)
    ]
    assert {u.phase for u in observer.updates} == {"writing"}
    assert observer.phases == ["publishing"], "told once, after the last chunk, before the target publishes"
    assert (result.records_written, result.chunks, result.resumed_from_chunk) == (1000, 4, 0)
    assert await checkpoints_left(target_dsn, spec.checkpoint_key) == 0


async def test_overwrite_replaces_the_target_rows(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 250)
    tgt = await target_like(target_dsn)
    async with pg(target_dsn) as conn:
        await conn.execute(SOURCE_FILL.format(t=tgt, lo=5000, hi=5099))
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.OVERWRITE, chunk_size=100)

    result = await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5)

    await same_rows(source_dsn, src, target_dsn, tgt)
    assert result.records_written == 250
    async with pg(target_dsn) as conn:
        stages = await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE '_batchsync_stage_%'")
    assert stages == 0


async def test_upsert_merges_on_key_columns(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 300)
    tgt = await target_like(target_dsn)
    async with pg(target_dsn) as conn:
        await conn.execute(SOURCE_FILL.format(t=tgt, lo=201, hi=400))
        await conn.execute(f"UPDATE {tgt} SET name = 'stale' WHERE id <= 250 OR id > 300")
        untouched = await conn.fetchval(f"SELECT xmin::text FROM {tgt} WHERE id = 280")
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.UPSERT, keys=["id"], chunk_size=70)

    await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5)

    want = await digest(source_dsn, f"SELECT * FROM {src} ORDER BY id")
    assert await digest(target_dsn, f"SELECT * FROM {tgt} WHERE id <= 300 ORDER BY id") == want
    async with pg(target_dsn) as conn:
        assert await conn.fetchval(f"SELECT count(*) FROM {tgt}") == 400
        assert await conn.fetchval(f"SELECT count(*) FROM {tgt} WHERE name = 'stale'") == 100
        assert await conn.fetchval(f"SELECT xmin::text FROM {tgt} WHERE id = 280") == untouched, "rewrote an equal row"
        assert await conn.fetchval(f"SELECT xmin::text FROM {tgt} WHERE id = 220") != untouched


async def test_mapping_is_pushed_into_the_source_select(source_dsn: str, target_dsn: str) -> None:
    src = unique("src")
    async with pg(source_dsn) as conn:
        await conn.execute(f"CREATE TABLE {src} (id integer PRIMARY KEY, code text, secret text, note varchar(5))")
        await conn.execute(f"INSERT INTO {src} SELECT g, (g * 10)::text, 'x', 'n' || g FROM generate_series(1, 50) g")
    tgt = unique("tgt")
    async with pg(target_dsn) as conn:
        await conn.execute(
            f'CREATE TABLE {tgt} (id bigint PRIMARY KEY, "Code" integer, note text, origin text, batch smallint)'
        )
    mapping = [
        {"from": "code", "to": "Code", "type": "int"},
        {"from": "secret", "drop": True},
        {"to": "origin", "value": "it's legacy"},
        {"to": "batch", "value": 7},
    ]
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mapping=mapping, chunk_size=20)

    await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5)

    async with pg(target_dsn) as conn:
        rows = await conn.fetch(f'SELECT id, "Code", note, origin, batch FROM {tgt} ORDER BY id')
    assert len(rows) == 50
    assert tuple(rows[4]) == (5, 50, "n5", "it's legacy", 7)


async def test_query_source_streams_through_a_cursor(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 500)
    tgt = await target_like(target_dsn)
    query = f"SELECT * FROM {src} WHERE id % 3 = 0 ORDER BY id;"
    spec = spec_for(source_dsn, target_dsn, tgt, query=query, chunk_size=40)
    observer = Recorder()

    result = await execute(spec, observer, connectors=REGISTRY, connect_timeout=5)

    want = await digest(source_dsn, f"SELECT * FROM {src} WHERE id % 3 = 0 ORDER BY id")
    assert await digest(target_dsn, f"SELECT * FROM {tgt} ORDER BY id") == want
    assert observer.starts == [(0, None)]
    assert (result.records_written, result.chunks) == (166, 5)


async def test_query_runs_read_only(source_dsn: str, target_dsn: str) -> None:
    seq = unique("seq")
    async with pg(source_dsn) as conn:
        await conn.execute(f"CREATE SEQUENCE {seq}")
        # nextval behind a function: the query guard does not see it, the read-only transaction refuses it
        await conn.execute(f"CREATE FUNCTION {seq}_next() RETURNS bigint LANGUAGE sql AS $$ SELECT nextval('{seq}') $$")
    tgt = await target_like(target_dsn)
    spec = spec_for(source_dsn, target_dsn, tgt, query=f"SELECT {seq}_next() AS id")

    with pytest.raises(AccessDenied, match=WRITE_REFUSED):
        await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5)


async def test_table_without_primary_key_uses_the_cursor_path(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 230)
    async with pg(source_dsn) as conn:
        await conn.execute(f"ALTER TABLE {src} DROP CONSTRAINT {src}_pkey")
    tgt = await target_like(target_dsn)

    spec = spec_for(source_dsn, target_dsn, tgt, table=src, chunk_size=100)

    result = await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5)

    await same_rows(source_dsn, src, target_dsn, tgt)
    assert [result.chunks, result.records_read] == [3, 230]


async def test_incremental_sync_reads_beyond_the_high_water_mark(source_dsn: str, target_dsn: str) -> None:
    src = await source_table(source_dsn, 120)
    tgt = await target_like(target_dsn)

    async def run(hwm: Any) -> Any:
        spec = spec_for(
            source_dsn, target_dsn, tgt, table=src, cursor="updated_at", mode=WriteMode.UPSERT, keys=["id"],
            chunk_size=50, high_water_mark=hwm,
        )
        return await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5)

    async def newest() -> str:
        async with pg(source_dsn) as conn:
            return await conn.fetchval(f"SELECT max(updated_at)::text FROM {src}")

    first = await run(None)
    first_mark = await newest()
    async with pg(source_dsn) as conn:
        await conn.execute(SOURCE_FILL.format(t=src, lo=121, hi=150))
        await conn.execute(f"UPDATE {src} SET name = 'touched', updated_at = '2030-01-01' WHERE id = 7")
    second = await run(first.high_water_mark)
    third = await run(second.high_water_mark)

    assert (first.records_written, first.high_water_mark["value"]) == (120, first_mark)
    assert (second.records_written, second.high_water_mark["value"]) == (31, await newest())
    assert (third.records_written, third.high_water_mark) == (0, second.high_water_mark)
    await same_rows(source_dsn, src, target_dsn, tgt)
    async with pg(target_dsn) as conn:
        assert await conn.fetchval(f"SELECT count(*) FROM {tgt} WHERE name = 'touched'") == 1
        assert await conn.fetchval(f"SELECT count(DISTINCT id) FROM {tgt}") == 150


async def test_an_overwrite_swap_longer_than_the_io_timeout_is_given_time_by_its_rows(
        source_dsn: str, target_dsn: str) -> None:
    """The final copy of a big overwrite works for longer than one I/O timeout (here a trigger makes it take 2.5 s
    against a 1 s timeout): its bound grows with the rows it publishes, so it is not taken for a frozen target
    (it used to fail every retry past ~50M rows at the default 120 s, docs/scale.md)."""
    rows = 80_000  # bound: 1 s + 80,000 / 20,000 rows/s = 5 s
    src = await source_table(source_dsn, rows)
    tgt = await target_like(target_dsn)
    async with pg(target_dsn) as conn:
        await conn.execute(f"""
            CREATE FUNCTION {tgt}_slow() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(2.5); RETURN NULL; END $$;
            CREATE TRIGGER {tgt}_slow BEFORE INSERT ON {tgt} FOR EACH STATEMENT EXECUTE FUNCTION {tgt}_slow();
        """)
    spec = spec_for(source_dsn, target_dsn, tgt, table=src, mode=WriteMode.OVERWRITE, chunk_size=20_000)
    result = await execute(spec, Recorder(), connectors=REGISTRY, connect_timeout=5, io_timeout=1.0,
                           policy=RetryPolicy(budget=0))
    assert result.records_written == rows
    await same_rows(source_dsn, src, target_dsn, tgt)

"""Slices on the real SQL connectors (docs/spec.md §10): a planned split read slice by slice, each slice on a
source of its own as a worker opens it, reads every row exactly once (the NULLs included, once) on PostgreSQL
(an integer and a timestamp column, keyset and cursor reads, decoded rows and binary COPY), MariaDB and SQLite;
estimates and counts see only the slice; and a sliced overwrite staged slice by slice is published at once on
PostgreSQL and MariaDB: the target replaced in one transaction (a concurrent PostgreSQL reader sees the old
rows or the new ones, nothing between), a second publish changes nothing."""

import asyncio
import json
import struct
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.api import SourceSpec, SplitSpec, TargetSpec, WriteMode
from schemas.messages import SPLIT_NEEDS_TABLE
from service.connectors.base import Checkpoint, SliceableSource, SliceStagingTarget, TargetTypes
from service.connectors.mysql.source import MySQLSource
from service.connectors.mysql.target import MySQLTarget
from service.connectors.postgresql.source import PostgresSource
from service.connectors.postgresql.target import CHECKPOINTS, PostgresTarget
from service.connectors.sql.source import SQLSource
from service.connectors.sql.target import stage_parts
from service.connectors.sqlite.source import SQLiteSource
from service.slicing.planner import plan_slices
from service.slicing.ranges import SliceRange
from service.sync.errors import ConfigInvalid, TargetFailed
from service.sync.model import Endpoint
from service.sync.transforms import plan_columns
from tests.contract.cases.mysql import mysql_execute, mysql_fetch
from tests.contract.cases.sqlite import sqlite_execute
from tests.integration.test_engine_sync import pg, same_rows, unique
from tests.support.policy import policy_for

MYSQL = "mysql://root@127.0.0.1:3306/test"

PG_TABLE = """CREATE TABLE {t} (id bigint PRIMARY KEY, n integer, ts timestamptz, note text);
INSERT INTO {t}
SELECT g,
       CASE WHEN g % 11 = 0 THEN NULL WHEN g % 5 = 0 THEN 7 ELSE g * 3 END,
       CASE WHEN g % 13 = 0 THEN NULL
            WHEN g <= 3000 THEN timestamptz '2021-06-15 00:00:00+00' + (g % 4) * interval '1 hour'
            ELSE timestamptz '2019-01-01 00:00:00+00' + g * interval '2 hours' END,
       'row ' || g
FROM generate_series(1, {rows}) g"""
"""`n`: NULL every 11th row, the value 7 every 5th (a value held by many rows), the rest spread out; `ts`:
NULL every 13th row, 2,770 rows on one day of 2021, the rest two hours apart over 2019 and 2020."""


async def pg_table(dsn: str, rows: int = 6_000, *, keyless: bool = False) -> str:
    name = unique("sl")
    async with pg(dsn) as conn:
        await conn.execute(PG_TABLE.format(t=name, rows=rows))
        if keyless:
            await conn.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_pkey")
        await conn.execute(f"ANALYZE {name}")
    return name


def copy_ids(data: bytes) -> list[int]:
    """The ids of a binary COPY of one bigint column."""
    ids, pos = [], 19
    while struct.unpack_from("!h", data, pos)[0] != -1:
        ids.append(struct.unpack_from("!q", data, pos + 6)[0])
        pos += 14
    return ids


async def read_slice(source: SQLSource, where: SliceRange, *, raw: bool = False, size: int = 700) -> list[int]:
    """The ids a run of the slice reads: restricted, described, started, then chunk after chunk."""
    source.restrict(where)
    columns = await source.describe()
    plan = plan_columns(["id"] if raw else [c.name for c in columns], None)
    spelled = {c.name: c.sql_type for c in columns if not raw or c.name == "id"}
    types = TargetTypes(spelled, source.capabilities.types)
    ids: list[int] = []
    async for chunk in source.chunks(plan, types, await source.start(None), size=size, raw=raw):
        if chunk.stream is not None:
            ids += copy_ids(b"".join([part async for part in chunk.stream]))
        else:
            ids += [int(row[0]) for row in chunk.rows or []]
    return ids


async def read_all(opened: Any, plan: list[SliceRange], **kwargs: Any) -> list[list[int]]:
    """Each slice read on a source of its own (`opened()`: a new, unopened source), as workers would."""
    out = []
    for where in plan:
        async with opened() as source:
            out.append(await read_slice(source, where, **kwargs))
    return out


def exactly_once(per_slice: list[list[int]], ids: range) -> None:
    every = sorted(i for ids_ in per_slice for i in ids_)
    assert every == list(ids), "each row in exactly one slice"


def pg_source(dsn: str, table: str | None = None, query: str | None = None) -> Any:
    return lambda: PostgresSource(Endpoint("postgresql", url=dsn), SourceSpec(table=table, query=query), 5)


async def counted(opened: Any, plan: list[SliceRange]) -> list[tuple[int, int | None, int | None]]:
    """Per slice: `count_range`, then the restricted source's `estimate` and `count_rows`."""
    out = []
    for where in plan:
        async with opened() as source:
            whole = await source.count_range(where)
            source.restrict(where)
            await source.describe()
            out.append((whole, await source.estimate(await source.start(None)), await source.count_rows()))
    return out


# PostgreSQL sources.

@pytest.mark.parametrize("raw", [False, True], ids=["rows", "binary-copy"])
async def test_pg_integer_slices_read_every_row_once(source_dsn: str, raw: bool) -> None:
    table = await pg_table(source_dsn)
    opened = pg_source(source_dsn, table)
    async with opened() as source:
        assert isinstance(source, SliceableSource)
        assert await source.column_kind("n") == "int" and await source.bounds("n") == (3, 17_997)
        plan = await plan_slices(source, SplitSpec(column="n", max_rows_per_slice=800))
        by_key = await plan_slices(source, SplitSpec(column="id", slices=5))
    assert len(plan) >= 8 and plan[0].nulls
    per_slice = await read_all(opened, plan, raw=raw)
    exactly_once(per_slice, range(1, 6_001))
    counts = await counted(opened, plan)
    assert [c for c, _, _ in counts] == [len(ids) for ids in per_slice]
    assert all(whole == estimate == count for whole, estimate, count in counts)  # small: counted exactly
    assert max(len(ids) for ids, where in zip(per_slice, plan, strict=True) if where.lo != 7) <= 800

    by_key_ids = await read_all(opened, by_key, raw=raw)
    assert [len(ids) for ids in by_key_ids] == [1_200] * 5
    exactly_once(by_key_ids, range(1, 6_001))


async def test_pg_timestamp_slices_read_every_row_once_keyed_and_keyless(source_dsn: str) -> None:
    for keyless in (False, True):
        table = await pg_table(source_dsn, keyless=keyless)
        opened = pg_source(source_dsn, table)
        async with opened() as source:
            assert await source.column_kind("ts") == "datetime"
            assert await source.bounds("ts") == ("2019-09-08T02:00:00+00:00", "2021-06-15T03:00:00+00:00")
            plan = await plan_slices(source, SplitSpec(column="ts", max_rows_per_slice=500))
        # 2019 holds more than 500 rows: its months; January takes the 461 NULLs, the empty months join it
        assert (plan[0].hi, plan[1].hi) == ("2019-09-01T00:00:00+00:00", "2019-10-01T00:00:00+00:00")
        # the busy day of 2021 (2,770 rows) is a slice of its own, its year, month and week cut down to it
        assert plan[-1] == SliceRange("ts", "datetime", "2021-06-15T00:00:00+00:00", None)
        per_slice = await read_all(opened, plan, size=300)
        exactly_once(per_slice, range(1, 6_001))
        assert [c for c, _, _ in await counted(opened, plan)] == [len(ids) for ids in per_slice]


async def test_pg_estimates_of_a_big_table_see_only_the_slice(source_dsn: str) -> None:
    table = unique("big")
    async with pg(source_dsn) as conn:
        await conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, v integer)")
        await conn.execute(f"INSERT INTO {table} SELECT g, g % 100 FROM generate_series(1, 150000) g")
        await conn.execute(f"ANALYZE {table}")
    opened = pg_source(source_dsn, table)
    async with opened() as source:
        plan = await plan_slices(source, SplitSpec(column="id", max_rows_per_slice=40_000))
        estimated = await source.count_range(SliceRange("id", "int", 50_001, 80_001), exact=False)
    assert 27_000 <= estimated <= 33_000  # EXPLAIN's estimate of 30,000 rows
    assert [(s.lo, s.hi) for s in plan] == [(None, 37_501), (37_501, 75_001), (75_001, 112_501), (112_501, None)]
    for where, (exact, estimate, count) in zip(plan, await counted(opened, plan), strict=True):
        assert exact == count == 37_500, where
        assert estimate is not None and abs(estimate - 37_500) <= 3_750  # not the table's 150,000


async def test_a_query_source_cannot_be_sliced(source_dsn: str) -> None:
    table = await pg_table(source_dsn, 10)
    async with pg_source(source_dsn, query=f"SELECT * FROM {table}")() as source:
        for ask in (source.column_kind("id"), source.bounds("id")):
            with pytest.raises(ConfigInvalid) as error:
                await ask
            assert error.value.reason == SPLIT_NEEDS_TABLE
        with pytest.raises(ConfigInvalid):
            source.restrict(SliceRange("id", "int", nulls=True))


# A sliced overwrite: each slice staged, all published at once.

async def stage_slice(source: SQLSource, target: Any, where: SliceRange, key: str, *, raw: bool,
                      size: int) -> Checkpoint:
    """One slice of an overwrite as the engine runs it: prepare, each chunk with its checkpoint, then staged."""
    source.restrict(where)
    names = [c.name for c in await source.describe()]
    spelled = {c.name: c.sql_type for c in await target.describe()}
    types = TargetTypes(spelled, target.capabilities.types)
    await target.prepare(key, names)
    last = Checkpoint(chunk=0, position={}, records_read=0, records_written=0)
    async for chunk in source.chunks(plan_columns(names, None), types, await source.start(None), size=size, raw=raw):
        chunk.number = last.chunk + 1
        last = await target.write(key, chunk, last) or last
    await target.stage_finished(key, names, last)
    return last


async def pg_stages(dsn: str, table: str, keys: list[str]) -> int:
    async with pg(dsn) as conn:
        return int(await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname = ANY($1::text[])",
                                       [stage_parts(table, k)[1] for k in keys]))


def marks(extra: Any, written: int) -> tuple[bool, bool, int]:
    """A stored checkpoint as (staged, finished, records written)."""
    found = json.loads(extra) if isinstance(extra, str) else extra
    return bool(found.get("staged")), bool(found.get("finished")), int(written)


async def pg_checkpoints(dsn: str, keys: list[str]) -> list[tuple[bool, bool, int]]:
    async with pg(dsn) as conn:
        rows = await conn.fetch(f"SELECT checkpoint_key::text AS k, extra, records_written FROM {CHECKPOINTS} "
                                "WHERE checkpoint_key = ANY($1::uuid[])", keys)
    found = {r["k"]: marks(r["extra"], r["records_written"]) for r in rows}
    return [found[k] for k in keys]


OVERWRITE_PLAN = [
    SliceRange("id", "int", None, 801, nulls=True),  # one chunk, held in memory: stage_finished must stage it
    SliceRange("id", "int", 801, 20_001),
    SliceRange("id", "int", 20_001, 40_001),
    SliceRange("id", "int", 40_001, 10**9),
    SliceRange("id", "int", 10**9, None),  # no rows: no stage is ever created
]
OVERWRITE_ROWS = [800, 19_200, 20_000, 20_000, 0]


async def test_pg_sliced_overwrite_is_published_at_once_and_never_seen_half_written(
    source_dsn: str, target_dsn: str
) -> None:
    table = await pg_table(source_dsn, 60_000)
    target_table = unique("tgt")
    async with pg(target_dsn) as conn:
        await conn.execute(f"CREATE TABLE {target_table} (id bigint PRIMARY KEY, n integer, ts timestamptz, "
                           "note text)")
        await conn.execute(f"INSERT INTO {target_table} SELECT g, g, now(), 'old' FROM generate_series(1, 40) g")
    opened = pg_source(source_dsn, table)
    endpoint = Endpoint("postgresql", url=target_dsn)
    spec = TargetSpec(table=target_table, mode=WriteMode.OVERWRITE)
    keys = [str(uuid.uuid4()) for _ in OVERWRITE_PLAN]
    for where, key, rows in zip(OVERWRITE_PLAN, keys, OVERWRITE_ROWS, strict=True):
        async with opened() as source, PostgresTarget(endpoint, spec, 5) as target:
            assert isinstance(target, SliceStagingTarget)
            last = await stage_slice(source, target, where, key, raw=True, size=4_000)
        assert last.records_written == rows
    assert await pg_stages(target_dsn, target_table, keys) == 4
    assert await pg_checkpoints(target_dsn, keys) == [(True, False, n) for n in OVERWRITE_ROWS]
    async with pg(target_dsn) as conn:
        assert await conn.fetchval(f"SELECT count(*) FROM {target_table}") == 40  # nothing published yet

    seen: list[tuple[bool, int]] = []
    publishing, done = asyncio.Event(), asyncio.Event()

    async def reader() -> None:
        async with pg(target_dsn) as conn:
            await conn.execute("SET statement_timeout = '5s'")  # a reader blocked behind the publish fails here
            while not done.is_set():
                during = publishing.is_set()
                count = await conn.fetchval(f"SELECT count(*) FROM {target_table}")
                seen.append((during and publishing.is_set(), count))
                await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    try:
        await asyncio.sleep(0.05)
        async with PostgresTarget(endpoint, spec, 5) as target:
            publishing.set()
            await target.publish_stages(keys, ["id", "n", "ts", "note"])
            publishing.clear()
        await asyncio.sleep(0.05)
    finally:
        done.set()
        await reading
    assert {count for _, count in seen} == {40, 60_000}, "readers see the old rows or the new ones, nothing else"
    assert any(during for during, _ in seen), "some reads ran while the stages were being published"
    await same_rows(source_dsn, table, target_dsn, target_table)
    assert await pg_stages(target_dsn, target_table, keys) == 0
    assert await pg_checkpoints(target_dsn, keys) == [(True, True, n) for n in OVERWRITE_ROWS]

    async with pg(target_dsn) as conn:  # published: a second publish (a retried run) must change nothing
        await conn.execute(f"INSERT INTO {target_table} (id, note) VALUES (-1, 'after the publish')")
    async with PostgresTarget(endpoint, spec, 5) as target:
        await target.publish_stages(keys, ["id", "n", "ts", "note"])
        await target.stage_finished(keys[1], ["id"], Checkpoint(5, {}, 1, 1))  # late: stays finished
        with pytest.raises(TargetFailed):  # a slice never staged is never published
            await target.publish_stages([*keys, str(uuid.uuid4())], ["id", "n", "ts", "note"])
        assert await target.count_rows() == 60_001
    assert await pg_checkpoints(target_dsn, keys) == [(True, True, n) for n in OVERWRITE_ROWS]


# MariaDB.

MYSQL_TABLE = """CREATE TABLE `{t}` (id BIGINT {key}, n INT NULL, ts DATETIME(6) NULL, note VARCHAR(40))
ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
MYSQL_FILL = """INSERT INTO `{t}`
SELECT seq,
       CASE WHEN seq % 11 = 0 THEN NULL WHEN seq % 5 = 0 THEN 7 ELSE seq * 3 END,
       CASE WHEN seq % 13 = 0 THEN NULL
            WHEN seq <= 3000 THEN TIMESTAMP '2021-06-15 00:00:00' + INTERVAL (seq % 4) HOUR
            ELSE TIMESTAMP '2019-01-01 00:00:00' + INTERVAL (seq * 2) HOUR END,
       CONCAT('row ', seq)
FROM seq_1_to_{rows}"""
"""The PostgreSQL table's values (PG_TABLE), from MariaDB's sequence engine."""


async def mysql_table(rows: int = 6_000, *, keyless: bool = False, name: str | None = None) -> str:
    name = name or unique("sl")
    await mysql_execute(MYSQL, MYSQL_TABLE.format(t=name, key="" if keyless else "PRIMARY KEY"))
    if rows:
        await mysql_execute(MYSQL, MYSQL_FILL.format(t=name, rows=rows))
        await mysql_execute(MYSQL, f"ANALYZE TABLE `{name}`")
    return name


def mysql_source(table: str) -> Any:
    return lambda: MySQLSource(Endpoint("mysql", url=MYSQL), SourceSpec(table=table), 5)


async def test_mysql_slices_read_every_row_once_keyed_and_keyless() -> None:
    for keyless in (False, True):
        opened = mysql_source(await mysql_table(keyless=keyless))
        async with opened() as source:
            assert await source.column_kind("ts") == "datetime"
            assert await source.bounds("n") == (3, 17_997)
            assert await source.bounds("ts") == ("2019-09-08T02:00:00", "2021-06-15T03:00:00")
            by_value = await plan_slices(source, SplitSpec(column="n", max_rows_per_slice=800))
            by_time = await plan_slices(source, SplitSpec(column="ts", max_rows_per_slice=500))
            by_key = await plan_slices(source, SplitSpec(column="id", slices=4))
        assert by_time[-1] == SliceRange("ts", "datetime", "2021-06-15T00:00:00", None)  # as on PostgreSQL
        for plan in (by_value, by_time, by_key):
            per_slice = await read_all(opened, plan, size=450)
            exactly_once(per_slice, range(1, 6_001))
            counts = await counted(opened, plan)
            assert all(whole == estimate == count == len(ids)
                       for (whole, estimate, count), ids in zip(counts, per_slice, strict=True))
        assert len(by_value) >= 8 and [len(ids) for ids in await read_all(opened, by_key)] == [1_500] * 4


async def test_mysql_estimates_of_a_big_table_see_only_the_slice() -> None:
    table = unique("big")
    await mysql_execute(MYSQL, f"CREATE TABLE `{table}` (id BIGINT PRIMARY KEY, v INT) ENGINE=InnoDB")
    await mysql_execute(MYSQL, f"INSERT INTO `{table}` SELECT seq, seq % 100 FROM seq_1_to_150000")
    await mysql_execute(MYSQL, f"ANALYZE TABLE `{table}`")
    narrow = SliceRange("id", "int", 1_000, 1_100)
    async with mysql_source(table)() as source:
        assert 0 < await source.count_range(narrow, exact=False) <= 1_000  # EXPLAIN's rows of the range
        source.restrict(narrow)
        await source.describe()
        estimate = await source.estimate(await source.start(None))
        assert estimate is not None and 0 < estimate <= 1_000  # not the table's 150,000
        assert await source.count_rows() == 100


async def mysql_stages(table: str, keys: list[str]) -> int:
    names = {stage_parts(table, k)[1] for k in keys}
    found = await mysql_fetch(MYSQL, "SELECT TABLE_NAME AS t FROM information_schema.TABLES "
                                     "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE '\\_batchsync\\_stage\\_%'")
    return len(names & {r["t"] for r in found})


async def mysql_checkpoints(keys: list[str]) -> list[tuple[bool, bool, int]]:
    listed = ", ".join(f"'{k}'" for k in keys)
    rows = await mysql_fetch(MYSQL, f"SELECT checkpoint_key AS k, extra, records_written AS w FROM {CHECKPOINTS} "
                                    f"WHERE checkpoint_key IN ({listed})")
    found = {r["k"]: marks(r["extra"], r["w"]) for r in rows}
    return [found[k] for k in keys]


async def mysql_rows(table: str) -> list[dict[str, Any]]:
    return await mysql_fetch(MYSQL, f"SELECT * FROM `{table}` ORDER BY id")


async def test_mysql_sliced_overwrite_is_published_at_once() -> None:
    source_table = await mysql_table(6_000)
    target_table = await mysql_table(0)
    await mysql_execute(MYSQL, f"INSERT INTO `{target_table}` (id, note) SELECT seq, 'old' FROM seq_1_to_40")
    plan = [SliceRange("id", "int", None, 2_001, nulls=True), SliceRange("id", "int", 2_001, 4_001),
            SliceRange("id", "int", 4_001, 10**9), SliceRange("id", "int", 10**9, None)]
    endpoint = Endpoint("mysql", url=MYSQL)
    spec = TargetSpec(table=target_table, mode=WriteMode.OVERWRITE)
    keys = [str(uuid.uuid4()) for _ in plan]
    for where, key, rows in zip(plan, keys, [2_000, 2_000, 2_000, 0], strict=True):
        async with mysql_source(source_table)() as source, MySQLTarget(endpoint, spec, 5) as target:
            assert isinstance(target, SliceStagingTarget)
            last = await stage_slice(source, target, where, key, raw=False, size=700)
        assert last.records_written == rows
    assert await mysql_stages(target_table, keys) == 4  # a slice without rows has an empty stage here
    assert await mysql_checkpoints(keys) == [(True, False, n) for n in (2_000, 2_000, 2_000, 0)]
    assert len(await mysql_rows(target_table)) == 40  # nothing published yet

    columns = ["id", "n", "ts", "note"]
    async with MySQLTarget(endpoint, spec, 5) as target:
        await target.publish_stages(keys, columns)
    assert await mysql_rows(target_table) == await mysql_rows(source_table)
    assert await mysql_stages(target_table, keys) == 0
    assert await mysql_checkpoints(keys) == [(True, True, n) for n in (2_000, 2_000, 2_000, 0)]

    await mysql_execute(MYSQL, f"INSERT INTO `{target_table}` (id, note) VALUES (-1, 'after the publish')")
    async with MySQLTarget(endpoint, spec, 5) as target:  # a second publish (a retried run) changes nothing
        await target.publish_stages(keys, columns)
        await target.stage_finished(keys[0], columns, Checkpoint(9, {}, 1, 1))  # late: stays finished
    async with MySQLTarget(endpoint, spec, 5) as target:
        with pytest.raises(TargetFailed):  # a slice never staged is never published
            await target.publish_stages([*keys, str(uuid.uuid4())], columns)
    async with MySQLTarget(endpoint, spec, 5) as target:
        assert await target.count_rows() == 6_001
    assert await mysql_checkpoints(keys) == [(True, True, n) for n in (2_000, 2_000, 2_000, 0)]


# SQLite.

async def test_sqlite_slices_read_every_row_once_on_its_text_dates(tmp_path: Path) -> None:
    """SQLite keeps times as text: slices bound as SQLite spells them cut at the calendar's edges."""
    path = tmp_path / "sliced.db"
    sqlite_execute(path, 'CREATE TABLE "t" (id INTEGER PRIMARY KEY, n INTEGER, ts DATETIME, d DATE)')
    start = datetime(2019, 1, 1, tzinfo=UTC)
    stamps = {i: None if i % 13 == 0 else start + timedelta(hours=(i % 4) if i <= 1_500 else 7 * i)
              for i in range(1, 4_001)}
    sqlite_execute(path, 'INSERT INTO "t" VALUES (?, ?, ?, ?)', [
        (i, None if i % 11 == 0 else i * 3, None if t is None else t.strftime("%Y-%m-%d %H:%M:%S.%f+00:00"),
         None if t is None else t.date().isoformat()) for i, t in stamps.items()])
    opened = lambda: SQLiteSource(Endpoint("sqlite", url=f"sqlite://{path}", policy=policy_for()),  # noqa: E731
                                  SourceSpec(table="t"), 5)
    async with opened() as source:
        assert await source.column_kind("ts") == "datetime" and await source.column_kind("d") == "date"
        plans = [await plan_slices(source, SplitSpec(column=c, max_rows_per_slice=300)) for c in ("n", "ts", "d")]
    for plan in plans:
        per_slice = await read_all(opened, plan, size=250)
        exactly_once(per_slice, range(1, 4_001))
        assert [c for c, _, _ in await counted(opened, plan)] == [len(ids) for ids in per_slice]
        if plan[0].kind == "int":
            continue
        for where, ids in zip(plan, per_slice, strict=True):  # each row in its calendar window
            lo = None if where.lo is None else datetime.fromisoformat(where.lo).date()
            hi = None if where.hi is None else datetime.fromisoformat(where.hi).date()
            days = [t.date() for t in (stamps[i] for i in ids) if t is not None]
            assert all((lo is None or lo <= day) and (hi is None or day < hi) for day in days), where
    # the first day's 1,385 rows (four hours) stay one slice, the NULLs and the empty windows until 2020 join it
    assert plans[1][0] == SliceRange("ts", "datetime", None, "2020-03-01T00:00:00+00:00", nulls=True)
    assert [(s.lo, s.hi) for s in plans[2]] == [(s.lo and s.lo[:10], s.hi and s.hi[:10]) for s in plans[1]]

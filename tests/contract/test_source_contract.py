"""Every source: streams in chunks, resumes from a checkpoint, carries every type, maps its errors."""

import time

import pytest

from service.sync.errors import ConnectTimeout, TableMissing
from tests.contract.harness import Crash, Recorder, make_rows, normalized, spec_for, sync
from tests.support.builders import unique
from tests.support.loopback import silent_server


async def test_streams_in_chunks_and_every_type_round_trips(source_case, reference):
    rows = make_rows(2500)
    table = unique("src")
    source = await source_case.seed(table, rows)
    target = await reference.create(table)
    recorder = Recorder()

    result = await sync(spec_for(source, target, table, chunk_size=1000), recorder)

    assert result.records_written == 2500
    assert [u.chunk for u in recorder.updates] == [1, 2, 3]
    assert normalized(await reference.read(target, table), source_case.fields) == normalized(rows, source_case.fields)


async def test_an_empty_source_syncs_nothing(source_case, reference):
    table = unique("src")
    source = await source_case.seed(table, [])
    target = await reference.create(table)
    result = await sync(spec_for(source, target, table))
    assert result.records_written == 0
    assert await reference.read(target, table) == []


async def test_resumes_after_a_crash_without_duplicates_or_gaps(source_case, reference):
    rows = make_rows(3000)
    table = unique("src")
    source = await source_case.seed(table, rows)
    target = await reference.create(table)
    spec = spec_for(source, target, table, chunk_size=1000)
    with pytest.raises(Crash):
        await sync(spec, Recorder(crash_after=1))

    resumed = Recorder()
    result = await sync(spec, resumed)

    assert resumed.started == [(1, resumed.started[0][1])]
    assert [u.chunk for u in resumed.updates] == [2, 3]
    assert result.records_written == 3000
    assert normalized(await reference.read(target, table), source_case.fields) == normalized(rows, source_case.fields)


async def test_a_missing_table_is_named(source_case, reference):
    source = await source_case.missing()
    table = unique("tgt")
    target = await reference.create(table)
    with pytest.raises(TableMissing) as error:
        await sync(spec_for(source, target, table))
    assert error.value.reason.startswith("源表不存在：")


async def test_an_unreachable_source_times_out_within_the_connect_timeout(source_case, reference):
    with silent_server() as port:
        endpoint = source_case.unreachable(port)
        if endpoint is None:
            pytest.skip(f"{source_case.name} has no network endpoint")
        table = unique("tgt")
        target = await reference.create(table)
        started = time.monotonic()
        with pytest.raises(ConnectTimeout) as error:
            await sync(spec_for((endpoint, (await source_case.missing())[1]), target, table), connect_timeout=1.0)
    assert time.monotonic() - started < 2.5
    assert error.value.reason == "连接超时"

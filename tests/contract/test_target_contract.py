"""Every target: appends, overwrites and upserts as it declares, carries every type, never duplicates
a chunk replayed after a crash."""

import time

import pytest

from service.sync.errors import ConnectTimeout, TableMissing
from tests.contract.harness import Crash, Recorder, make_rows, normalized, spec_for, sync
from tests.support.builders import unique
from tests.support.loopback import silent_server


async def seeded(reference, rows):
    table = unique("src")
    return table, await reference.seed(table, rows)


async def test_append_carries_every_type(target_case, reference):
    rows = make_rows(2500)
    table, source = await seeded(reference, rows)
    target = await target_case.create(table)
    result = await sync(spec_for(source, target, table, chunk_size=1000))
    assert result.records_written == 2500
    assert normalized(await target_case.read(target, table), target_case.fields) == \
        normalized(rows, target_case.fields)


async def test_overwrite_replaces_the_rows(target_case, reference):
    if "overwrite" not in target_case.modes:
        pytest.skip(f"{target_case.name} does not support overwrite")
    table, source = await seeded(reference, make_rows(1500))
    target = await target_case.create(table)
    await sync(spec_for(source, target, table, chunk_size=1000))
    smaller = make_rows(700, start=5000)
    table2, source2 = await seeded(reference, smaller)
    await sync(spec_for(source2, target, table, mode="overwrite", chunk_size=300))
    assert normalized(await target_case.read(target, table), target_case.fields) == \
        normalized(smaller, target_case.fields)


async def test_upsert_merges_on_the_key(target_case, reference):
    if "upsert" not in target_case.modes:
        pytest.skip(f"{target_case.name} does not support upsert")
    first = make_rows(1000)
    table, source = await seeded(reference, first)
    target = await target_case.create(table)
    await sync(spec_for(source, target, table, chunk_size=400))
    changed = [{**row, "name": f"改-{row['id']}"} for row in make_rows(600, start=701)]
    _, source2 = await seeded(reference, changed)
    await sync(spec_for(source2, target, table, mode="upsert", chunk_size=250))
    expected = {row["id"]: row for row in first} | {row["id"]: row for row in changed}
    assert normalized(await target_case.read(target, table), target_case.fields) == \
        normalized(list(expected.values()), target_case.fields)


async def test_a_replayed_chunk_never_duplicates_rows(target_case, reference):
    rows = make_rows(3000)
    table, source = await seeded(reference, rows)
    target = await target_case.create(table)
    spec = spec_for(source, target, table, chunk_size=1000)
    with pytest.raises(Crash):
        await sync(spec, Recorder(crash_after=2))
    await sync(spec)
    written = await target_case.read(target, table)
    assert len(written) == 3000
    assert normalized(written, target_case.fields) == normalized(rows, target_case.fields)


async def test_a_missing_target_table_is_named(target_case, reference):
    table, source = await seeded(reference, make_rows(10))
    target = await target_case.create(unique("other"))
    with pytest.raises(TableMissing) as error:
        await sync(spec_for(source, target, table))
    assert error.value.reason.startswith("目标表不存在：")


async def test_an_unreachable_target_times_out_within_the_connect_timeout(target_case, reference):
    table, source = await seeded(reference, make_rows(10))
    with silent_server() as port:
        endpoint = target_case.unreachable(port)
        if endpoint is None:
            pytest.skip(f"{target_case.name} has no network endpoint")
        started = time.monotonic()
        with pytest.raises(ConnectTimeout):
            await sync(spec_for(source, endpoint, table), connect_timeout=1.0)
    assert time.monotonic() - started < 2.5


async def test_a_finished_run_executed_again_writes_nothing_again(target_case, reference):
    """The target published the rows but the outcome never reached the state store (the worker died right
    after): the run is resumed by another worker and must not write its rows a second time."""
    rows = make_rows(1500)
    table, source = await seeded(reference, rows)
    target = await target_case.create(table)
    spec = spec_for(source, target, table, chunk_size=1000)
    first = await sync(spec)

    again = Recorder()
    second = await sync(spec, again)

    assert (second.records_written, second.chunks) == (first.records_written, first.chunks) == (1500, 2)
    assert again.updates == []
    assert normalized(await target_case.read(target, table), target_case.fields) == \
        normalized(rows, target_case.fields)

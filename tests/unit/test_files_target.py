"""CSV and JSON Lines targets on real files: part files and sidecar checkpoints make a replayed chunk
and a retried finish harmless; append, overwrite, header, BOM, GBK and gzip as written bytes."""

import gzip
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.api import TargetSpec
from service.connectors.base import Checkpoint, Chunk, Column
from service.connectors.csv.target import CsvTarget
from service.connectors.jsonl.target import JsonlTarget
from service.sync.errors import TableMissing, TargetFailed
from service.sync.model import Endpoint
from tests.support.policy import policy_for

KEY = "3f2b3c1e-0000-4000-8000-000000000001"
EMPTY = Checkpoint(chunk=0, position={}, records_read=0, records_written=0)


def target(cls, folder: Path, mode="append", **params):
    endpoint = Endpoint(type=cls.suffix, params={"path": str(folder), **params}, policy=policy_for())
    return cls(endpoint, TargetSpec(table="t", mode=mode), 1)


def chunk(number: int, rows, columns=("id", "name")) -> Chunk:
    return Chunk(number=number, position={"n": number}, columns=list(columns), rows=list(rows))


async def run(sink, chunks, finish=True):
    await sink.describe()
    await sink.prepare(KEY, ["id", "name"])
    checkpoint = await sink.read_checkpoint(KEY) or EMPTY
    for c in chunks:
        checkpoint = await sink.write(KEY, c, checkpoint) or checkpoint
    if finish:
        await sink.finish(KEY, ["id", "name"], checkpoint)
    return checkpoint


async def test_a_chunk_replayed_after_a_crash_is_written_once(tmp_path: Path):
    (tmp_path / "t.csv").write_text("id,name\n", encoding="utf-8")
    sink = target(CsvTarget, tmp_path)
    await run(sink, [chunk(1, [(1, "a")]), chunk(2, [(2, "b")])], finish=False)
    assert await sink.write(KEY, chunk(2, [(2, "b")]), EMPTY) is None
    saved = (tmp_path / ".batchsync" / f"t.csv.{KEY}" / "checkpoint.json").read_bytes()
    await sink.write(KEY, chunk(3, [(3, "c")]), await sink.read_checkpoint(KEY))
    (tmp_path / ".batchsync" / f"t.csv.{KEY}" / "checkpoint.json").write_bytes(saved)  # died before the sidecar

    resumed = target(CsvTarget, tmp_path)
    checkpoint = await run(resumed, [chunk(3, [(3, "c")])])

    assert checkpoint.chunk == 3 and checkpoint.records_written == 3
    assert (tmp_path / "t.csv").read_text(encoding="utf-8") == "id,name\n1,a\n2,b\n3,c\n"
    assert (await resumed.read_checkpoint(KEY)).finished
    assert [p.name for p in (tmp_path / ".batchsync" / f"t.csv.{KEY}").iterdir()] == ["checkpoint.json"]


async def test_a_finish_retried_after_the_rename_does_not_append_twice(tmp_path: Path, monkeypatch):
    (tmp_path / "t.csv").write_text("id,name\n0,old", encoding="utf-8")
    sink = target(CsvTarget, tmp_path)
    written = await run(sink, [chunk(1, [(1, "a")])], finish=False)

    def crash(*_args, **_kwargs):
        raise SystemExit("worker killed after the rename")

    with monkeypatch.context() as patched:
        patched.setattr(type(sink), "_keep_only_finished", crash)
        with pytest.raises(SystemExit):
            await sink.finish(KEY, ["id", "name"], written)
    assert await sink.read_checkpoint(KEY) is not None
    await target(CsvTarget, tmp_path).finish(KEY, ["id", "name"], written)

    assert (tmp_path / "t.csv").read_text(encoding="utf-8") == "id,name\n0,old\n1,a\n"


async def test_overwrite_replaces_the_file_and_keeps_its_header_order(tmp_path: Path):
    (tmp_path / "t.csv").write_text("name,id\nx,9\n", encoding="utf-8")
    await run(target(CsvTarget, tmp_path, mode="overwrite"), [chunk(1, [(1, None), (2, "b,c")])])
    assert (tmp_path / "t.csv").read_text(encoding="utf-8") == 'name,id\n,1\n"b,c",2\n'


async def test_gbk_bom_and_gzip_targets(tmp_path: Path):
    (tmp_path / "t.csv").write_bytes("编号,名称\n".encode("gbk"))
    sink = CsvTarget(Endpoint(type="csv", params={"path": str(tmp_path), "encoding": "gbk"}, policy=policy_for()),
                     TargetSpec(table="t", mode="overwrite"), 1)
    await sink.describe()
    await sink.prepare(KEY, ["编号", "名称"])
    written = await sink.write(KEY, chunk(1, [(1, "北京")], ("编号", "名称")), EMPTY)
    await sink.finish(KEY, ["编号", "名称"], written)
    assert (tmp_path / "t.csv").read_bytes() == "编号,名称\n1,北京\n".encode("gbk")
    with pytest.raises(TargetFailed) as error:
        await sink.write(KEY, chunk(2, [(1, "ok"), (2, "€ 😀")], ("编号", "名称")), written)
    assert error.value.reason == "无法以 gbk 编码写入：t.csv 本块第 2 行"

    (tmp_path / "bom").mkdir()
    (tmp_path / "bom" / "t.csv").write_bytes(b"\xef\xbb\xbfid,name\n")
    await run(target(CsvTarget, tmp_path / "bom", mode="overwrite", encoding="utf-8-sig"),
              [chunk(1, [(1, "a")]), chunk(2, [(2, "b")])])
    assert (tmp_path / "bom" / "t.csv").read_bytes() == b"\xef\xbb\xbfid,name\n1,a\n2,b\n"

    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(b"id,name\n1,a\n"))
    (tmp_path / "t.csv").unlink()
    await run(target(CsvTarget, tmp_path), [chunk(1, [(2, "b")])])
    assert gzip.decompress((tmp_path / "t.csv.gz").read_bytes()) == b"id,name\n1,a\n2,b\n"


async def test_a_missing_file_is_a_missing_target_table_unless_created(tmp_path: Path):
    sink = target(CsvTarget, tmp_path)
    with pytest.raises(TableMissing) as error:
        await sink.describe()
    assert error.value.reason == "目标表不存在：t"
    await sink.create_table([Column("id", "bigint", "int"), Column("name", "text", "string")])
    assert [c.name for c in await sink.describe()] == ["id", "name"]
    assert (tmp_path / "t.csv").read_text() == "id,name\n"


async def test_jsonl_target_takes_the_planned_columns_and_nests_documents(tmp_path: Path):
    (tmp_path / "t.jsonl").write_bytes(b"")
    sink = target(JsonlTarget, tmp_path)
    assert await sink.describe() == []
    planned = [Column("id", "bigint", "int"), Column("doc", "jsonb", "json"), Column("at", "", "datetime"),
               Column("amount", "numeric", "decimal"), Column("blob", "bytea", "binary")]
    assert [c.name for c in await sink.accept_columns(planned)] == ["id", "doc", "at", "amount", "blob"]
    await sink.prepare(KEY, [c.name for c in planned])
    row = (1, '{"a": [1, "中"]}', datetime(2026, 1, 1, tzinfo=UTC), Decimal("-1.50"), b"\x00\n")
    written = await sink.write(KEY, chunk(1, [row, (2, None, None, None, None)], [c.name for c in planned]), EMPTY)
    await sink.finish(KEY, [], written)
    lines = (tmp_path / "t.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": 1, "doc": {"a": [1, "中"]}, "at": "2026-01-01T00:00:00+00:00", "amount": "-1.50", "blob": "AAo="},
        {"id": 2, "doc": None, "at": None, "amount": None, "blob": None}]
    assert '"中"' in lines[0] and date(2026, 1, 1).isoformat() in lines[0]


async def test_abandon_leaves_the_target_file_as_it_was(tmp_path: Path):
    (tmp_path / "t.csv").write_text("id,name\n1,a\n", encoding="utf-8")
    sink = target(CsvTarget, tmp_path, mode="overwrite")
    await run(sink, [chunk(1, [(2, "b")])], finish=False)
    await sink.abandon(KEY)
    assert (tmp_path / "t.csv").read_text() == "id,name\n1,a\n"
    assert await sink.read_checkpoint(KEY) is None


async def test_a_headerless_csv_target_takes_its_declared_columns(tmp_path: Path):
    (tmp_path / "t.csv").write_text("7|old\n", encoding="utf-8")
    sink = target(CsvTarget, tmp_path, header=False, delimiter="|", nullValue="\\N",
                  columns=[{"name": "id", "kind": "int"}, "name"])
    assert [(c.name, c.kind, c.sql_type) for c in await sink.describe()] == [("id", "int", "bigint"),
                                                                             ("name", None, "text")]
    await run(sink, [chunk(1, [(8, None), (9, "a|b")])])
    assert (tmp_path / "t.csv").read_text(encoding="utf-8") == '7|old\n8|\\N\n9|"a|b"\n'

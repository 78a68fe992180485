"""The CSV source's copy stream: whole records as UTF-8 bytes (quoted newlines, GBK, BOM, blank lines,
several files), the same resume positions as decoded rows, and when a run may take that path."""

from pathlib import Path

import pytest

from schemas.api import MappingEntry, SourceSpec
from service.connectors.base import TargetTypes
from service.connectors.csv.source import CsvSource
from service.connectors.csv.stream import streamable
from service.connectors.postgresql.types import TYPES
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.model import Endpoint
from service.sync.transforms import plan_columns
from tests.support.policy import policy_for

TEXT = TargetTypes({"id": "bigint", "note": "text"}, TYPES)


async def stream(params: dict, *, size: int, position=None, types=TEXT, table="t"):
    source = CsvSource(Endpoint(type="csv", params=params, policy=policy_for()), SourceSpec(table=table), 1.0)
    async with source:
        columns = await source.describe()
        plan = plan_columns([c.name for c in columns], None)
        start = position or await source.start(None)
        out = []
        async for chunk in source.chunks(plan, types, start, size=size, raw=True):
            assert chunk.rows is None and chunk.stream is not None
            out.append((b"".join([piece async for piece in chunk.stream]), chunk.position))
        return out


async def test_whole_records_across_files_transcoded_to_utf8(tmp_path: Path):
    (tmp_path / "t_1.csv").write_bytes('id,note\n1,"两行\n文本"\n\n2,"a ""q"", b"\n'.encode("gbk"))
    (tmp_path / "t_2.csv").write_bytes("id,note\n3,北京\n4,".encode("gbk"))
    chunks = await stream({"path": str(tmp_path / "t_*.csv"), "encoding": "gbk"}, size=2)
    assert [data.decode() for data, _ in chunks] == ['1,"两行\n文本"\n2,"a ""q"", b"\n', "3,北京\n4,\n"]
    assert chunks[0][1] == {"file": 0, "name": "t_1.csv", "offset": len('id,note\n1,"两行\n文本"\n\n2,"a ""q"", b"\n'
                                                                           .encode("gbk")), "line": 5}
    assert chunks[1][1] == {"file": 1, "name": "t_2.csv", "offset": len("id,note\n3,北京\n4,".encode("gbk")), "line": 3}

    resumed = await stream({"path": str(tmp_path / "t_*.csv"), "encoding": "gbk"}, size=2, position=chunks[0][1])
    assert [data.decode() for data, _ in resumed] == ["3,北京\n4,\n"]


async def test_a_bom_is_dropped_and_bad_bytes_name_their_line(tmp_path: Path):
    (tmp_path / "t.csv").write_bytes(b"\xef\xbb\xbfid,note\n1,x\n2,\xff\n")
    with pytest.raises(SourceFailed) as error:
        await stream({"path": str(tmp_path)}, size=10)
    assert error.value.reason == "文件编码错误：t.csv 第 3 行不是有效的 utf-8 文本"
    (tmp_path / "t.csv").write_bytes(b"\xef\xbb\xbfid,note\n1,x\n")
    assert await stream({"path": str(tmp_path)}, size=10) == [(b"1,x\n", {"file": 1, "offset": 0, "line": 0})]


async def test_a_second_file_with_another_header_is_refused(tmp_path: Path):
    (tmp_path / "t_1.csv").write_bytes(b"id,note\n1,x\n")
    (tmp_path / "t_2.csv").write_bytes(b"id,other\n2,y\n")
    with pytest.raises(ConfigInvalid, match="t_2.csv"):
        await stream({"path": str(tmp_path / "t_*.csv")}, size=10)


async def test_only_plain_pass_through_runs_take_the_stream(tmp_path: Path):
    (tmp_path / "t.csv").write_bytes(b"id,note\n1,x\n")
    source = CsvSource(Endpoint(type="csv", params={"path": str(tmp_path)}, policy=policy_for()), SourceSpec(table="t"),
                       1.0)
    columns = await source.describe()
    plain = plan_columns(["id", "note"], None)
    assert streamable(source.options, columns, plain, TEXT)
    renamed = plan_columns(["id", "note"], [MappingEntry(**{"from": "note", "to": "n"})])
    assert streamable(source.options, columns, renamed, TargetTypes({"id": "bigint", "n": "text"}, TYPES))
    assert not streamable(source.options, columns, plain, TargetTypes({"id": "bigint", "note": "bytea"}, TYPES))
    assert not streamable(source.options, columns, plan_columns(["id", "note"], [MappingEntry(**{"from": "note",
                                                                                               "drop": True})]), TEXT)
    assert not streamable(source.options, columns, plan_columns(["id", "note"], [MappingEntry(**{"from": "id",
                                                                                               "type": "int"})]), TEXT)
    for params in ({"delimiter": ";"}, {"nullValue": "NA"}, {"columns": {"id": "int", "note": "string"}}):
        other = CsvSource(Endpoint(type="csv", params={"path": str(tmp_path), **params}, policy=policy_for()),
                          SourceSpec(table="t"), 1)
        assert not streamable(other.options, await other.describe(), plain, TEXT)

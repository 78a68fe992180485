"""CSV and JSON Lines sources on real files: options, encodings, gzip, folders and globs, resume
positions that seek past what was read, and errors that name the file and line."""

import gzip
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.api import SourceSpec
from service.connectors.base import TargetTypes
from service.connectors.csv.source import CsvSource
from service.connectors.jsonl.source import JsonlSource
from service.connectors.postgresql.types import TYPES
from service.sync.errors import ConfigInvalid, SourceFailed, TableMissing
from service.sync.model import Endpoint
from service.sync.transforms import plan_columns
from tests.support.policy import policy_for


async def read(source_class, params, table="t", *, size=2, types=None, position=None):
    endpoint = Endpoint(type=source_class.suffix, params=params, policy=policy_for())
    source = source_class(endpoint, SourceSpec(table=table), 1.0)
    async with source:
        columns = await source.describe()
        plan = plan_columns([c.name for c in columns], None)
        wanted = {c.name: "text" for c in columns} | (types or {})
        start = position or await source.start(None)
        chunks = [c async for c in source.chunks(plan, TargetTypes(wanted, TYPES), start, size=size, raw=False)]
    return columns, chunks


def rows_of(chunks):
    return [row for chunk in chunks for row in chunk.rows]


@pytest.mark.parametrize(("encoding", "data"), [
    ("gbk", "编号,名称\n1,北京客户\n2,上海\n".encode("gbk")),
    ("utf-8-sig", b"\xef\xbb\xbf" + "编号,名称\n1,北京客户\n2,上海\n".encode()),
    ("utf-8", b"\xef\xbb\xbf" + "编号,名称\n1,北京客户\n2,上海\n".encode()),
])
async def test_encodings_and_a_byte_order_mark(tmp_path: Path, encoding, data):
    (tmp_path / "t.csv").write_bytes(data)
    columns, chunks = await read(CsvSource, {"path": str(tmp_path), "encoding": encoding})
    assert [c.name for c in columns] == ["编号", "名称"]
    assert rows_of(chunks) == [("1", "北京客户"), ("2", "上海")]


async def test_options_delimiter_quote_null_and_no_header(tmp_path: Path):
    (tmp_path / "t.csv").write_text("1;'a;b';NA\n2;'';x\n3;\n", encoding="utf-8")
    params = {"path": str(tmp_path / "t.csv"), "header": False, "delimiter": ";", "quote": "'", "nullValue": "NA"}
    columns, chunks = await read(CsvSource, params, table="label")
    assert [c.name for c in columns] == ["column_1", "column_2", "column_3"]
    assert rows_of(chunks) == [("1", "a;b", None), ("2", "", "x"), ("3", "", None)]


async def test_types_follow_the_target_columns_and_declared_kinds(tmp_path: Path):
    (tmp_path / "t.csv").write_text("id,amount,paid,blob\n1,-49.95,true,\\x00ff\n2,,f,\n", encoding="utf-8")
    types = {"id": "bigint", "amount": "numeric(14,2)", "paid": "boolean", "blob": "bytea"}
    _, chunks = await read(CsvSource, {"path": str(tmp_path)}, types=types)
    assert rows_of(chunks) == [(1, Decimal("-49.95"), True, b"\x00\xff"), (2, None, False, None)]

    declared = {"path": str(tmp_path), "columns": [{"name": "id", "kind": "int"}, "amount", "paid", "blob"]}
    columns, chunks = await read(CsvSource, declared)
    assert [(c.name, c.kind) for c in columns] == [("id", "int"), ("amount", None), ("paid", None), ("blob", None)]
    assert rows_of(chunks)[0] == ("1", "-49.95", "true", "\\x00ff")


async def test_a_value_that_does_not_fit_names_column_file_and_line(tmp_path: Path):
    (tmp_path / "t.csv").write_text("id,n\n1,2\n2,x\n", encoding="utf-8")
    with pytest.raises(SourceFailed) as error:
        await read(CsvSource, {"path": str(tmp_path)}, types={"n": "bigint"}, size=10)
    assert error.value.reason == "字段转换失败：n（t.csv 第 3 行）"


async def test_an_undecodable_line_names_file_and_line(tmp_path: Path):
    (tmp_path / "t.csv").write_bytes("a,b\n1,好\n".encode() + "2,坏\n".encode("gbk"))
    with pytest.raises(SourceFailed) as error:
        await read(CsvSource, {"path": str(tmp_path)})
    assert error.value.reason == "文件编码错误：t.csv 第 3 行不是有效的 utf-8 文本"


async def test_missing_file_folder_or_glob_is_a_missing_source_table(tmp_path: Path):
    for params, table in (({"path": str(tmp_path)}, "nope"), ({"path": str(tmp_path / "gone.csv")}, "label"),
                          ({"path": str(tmp_path / "x_*.csv")}, "label"), ({"path": str(tmp_path / "no")}, "t")):
        with pytest.raises(TableMissing) as error:
            await read(CsvSource, params, table=table)
        assert error.value.reason.startswith("源表不存在：")
    with pytest.raises(TableMissing) as error:
        await read(CsvSource, {"path": str(tmp_path)}, table="orders")
    assert error.value.reason == "源表不存在：orders"


async def test_a_glob_reads_plain_and_gzip_files_in_sorted_order_across_chunks(tmp_path: Path):
    (tmp_path / "part_2.csv.gz").write_bytes(gzip.compress(b"id\n3\n4\n5\n"))
    (tmp_path / "part_1.csv").write_bytes(b"id\n1\n2\n")
    (tmp_path / "other.csv").write_bytes(b"id\n99\n")
    _, chunks = await read(CsvSource, {"path": str(tmp_path / "part_*.csv*")}, size=2)
    assert [c.rows for c in chunks] == [[("1",), ("2",)], [("3",), ("4",)], [("5",)]]
    assert chunks[0].position == {"file": 0, "name": "part_1.csv", "offset": 7, "line": 3}
    assert chunks[-1].position == {"file": 2, "offset": 0, "line": 0}


async def test_files_with_different_headers_are_refused(tmp_path: Path):
    (tmp_path / "a_1.csv").write_bytes(b"id,name\n1,x\n")
    (tmp_path / "a_2.csv").write_bytes(b"id,title\n2,y\n")
    with pytest.raises(ConfigInvalid) as error:
        await read(CsvSource, {"path": str(tmp_path / "a_*.csv")})
    assert error.value.reason == "文件表头与第一个文件不一致：a_2.csv"


@pytest.mark.parametrize("compressed", [False, True])
async def test_resume_seeks_past_what_was_read(tmp_path: Path, compressed: bool):
    """The rows before the checkpoint are made undecodable: a resumed read that re-read them would fail."""
    header, body = b"id,note\n", "".join(f'{i},"line\n{i}"\n' for i in range(1, 8)).encode()
    path = tmp_path / ("t.csv.gz" if compressed else "t.csv")
    path.write_bytes(gzip.compress(header + body) if compressed else header + body)
    _, first = await read(CsvSource, {"path": str(tmp_path)}, size=3)
    position = first[0].position
    assert position == {"file": 0, "name": path.name, "offset": len(header) + len(b'1,"line\n1"\n') * 3, "line": 7}

    done = position["offset"] - len(header)
    damaged = header + b"\xff" * done + body[done:]
    path.write_bytes(gzip.compress(damaged) if compressed else damaged)
    _, resumed = await read(CsvSource, {"path": str(tmp_path)}, size=3, types={"id": "bigint"}, position=position)
    assert rows_of(resumed) == [(i, f"line\n{i}") for i in range(4, 8)]
    with pytest.raises(SourceFailed, match="文件编码错误"):
        await read(CsvSource, {"path": str(tmp_path)}, size=3)


async def test_jsonl_columns_from_the_first_records_and_values_by_target_type(tmp_path: Path):
    lines = ['{"id": 1, "amount": "12.30", "doc": {"a": [1]}, "ok": true}', "",
             '{"id": 2, "amount": null, "extra": 5, "doc": "x", "ok": false, "late": 1.5}']
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    types = {"id": "bigint", "amount": "numeric", "doc": "jsonb", "ok": "boolean", "late": "double precision"}
    columns, chunks = await read(JsonlSource, {"path": str(tmp_path)}, types=types)
    assert [(c.name, c.kind) for c in columns] == [
        ("id", "int"), ("amount", None), ("doc", "json"), ("ok", "bool"), ("extra", "int"), ("late", "float")]
    assert rows_of(chunks) == [(1, Decimal("12.30"), '{"a": [1]}', True, None, None),
                               (2, None, '"x"', False, "5", 1.5)]


async def test_jsonl_errors_name_file_and_line(tmp_path: Path):
    (tmp_path / "t.jsonl").write_text('{"id": 1}\n{"id": \n', encoding="utf-8")
    with pytest.raises(SourceFailed) as error:
        await read(JsonlSource, {"path": str(tmp_path)})
    assert error.value.reason == "JSON 格式错误：t.jsonl 第 2 行"
    (tmp_path / "t.jsonl").write_text('{"id": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(SourceFailed) as error:
        await read(JsonlSource, {"path": str(tmp_path)})
    assert error.value.reason == "不是 JSON 对象：t.jsonl 第 2 行"


async def test_cursor_columns_and_unsupported_encodings_are_refused(tmp_path: Path):
    with pytest.raises(ConfigInvalid, match="cursorColumn"):
        CsvSource(Endpoint(type="csv", params={"path": str(tmp_path)}, policy=policy_for()),
                  SourceSpec(table="t", cursor_column="id"), 1)
    with pytest.raises(ConfigInvalid, match="utf-16"):
        CsvSource(Endpoint(type="csv", params={"path": str(tmp_path), "encoding": "utf-16"}, policy=policy_for()),
                  SourceSpec(table="t"), 1)


async def test_a_batch_table_may_be_a_glob_or_a_chinese_file_name_inside_the_folder(tmp_path: Path):
    (tmp_path / "订单_1.csv").write_text("id\n1\n2\n", encoding="utf-8")
    (tmp_path / "订单_2.csv").write_text("id\n3\n", encoding="utf-8")
    (tmp_path / "其他.csv").write_text("id\n9\n", encoding="utf-8")
    _, chunks = await read(CsvSource, {"path": str(tmp_path)}, SourceSpec(table="订单_*").table)
    assert rows_of(chunks) == [("1",), ("2",), ("3",)]
    with pytest.raises(ValueError):
        SourceSpec(table="../订单_*")

"""The canonical type mapping: each SQL connector's type map (native types to kinds and back), compatibility,
and value conversion."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from service.connectors.base import KINDS, Column, SelectItem, TypeMap
from service.connectors.mysql.types import TYPES as MYSQL
from service.connectors.postgresql.types import TYPES as POSTGRESQL
from service.connectors.sqlite.types import TYPES as SQLITE
from service.sync.errors import SourceFailed
from service.sync.types import compatible, row_converter, to_python, value_converter


@pytest.mark.parametrize("types", [POSTGRESQL, MYSQL, SQLITE], ids=["postgresql", "mysql", "sqlite"])
def test_every_kind_round_trips_through_each_systems_spelling(types: TypeMap) -> None:
    assert set(types.native) == set(KINDS)
    for kind in KINDS:
        assert types.kind_of(types.spell(kind)) == kind


@pytest.mark.parametrize(("native", "kind"), [
    ("integer", "int"), ("numeric(14,2)", "decimal"), ("character varying(20)", "string"),
    ("timestamp without time zone", "datetime"), ("timestamp with time zone", "datetime"), ("jsonb", "json"),
    ("bytea", "binary"), ("integer[]", None), ("tsvector", None),
])
def test_postgresql_types(native: str, kind: str | None) -> None:
    assert POSTGRESQL.kind_of(native) == kind


@pytest.mark.parametrize(("native", "kind"), [
    ("tinyint(1)", "bool"), ("tinyint(4)", "int"), ("bigint(20) unsigned", "int"), ("decimal(14,2)", "decimal"),
    ("datetime(6)", "datetime"), ("timestamp", "datetime"), ("longtext", "string"), ("varchar(255)", "string"),
    ("longblob", "binary"), ("json", "json"), ("bit(1)", "bool"), ("bit(8)", "int"), ("geometry", None),
])
def test_mysql_types(native: str, kind: str | None) -> None:
    assert MYSQL.kind_of(native) == kind


@pytest.mark.parametrize(("native", "kind"), [
    ("INTEGER", "int"), ("BIGINT", "int"), ("VARCHAR(10)", "string"), ("DECIMAL(14,2)", "decimal"),
    ("DECIMAL_TEXT(14,2)", "decimal"), ("BOOLEAN", "bool"), ("DATETIME", "datetime"), ("DOUBLE", "float"),
    ("BLOB", "binary"), ("", None),
])
def test_sqlite_declared_types(native: str, kind: str | None) -> None:
    assert SQLITE.kind_of(native) == kind


def test_a_created_decimal_keeps_the_source_precision_and_scale() -> None:
    assert MYSQL.spell("decimal", "numeric(14,2)") == "decimal(14,2)"
    assert POSTGRESQL.spell("decimal", "decimal(10,3)") == "numeric(10,3)"
    assert SQLITE.spell("decimal", "numeric(14,2)") == "DECIMAL_TEXT(14,2)"
    assert MYSQL.spell("decimal") == "decimal(38,10)"


def test_compatibility_refuses_text_into_integer_but_widens() -> None:
    assert not compatible("string", "int")
    assert not compatible("binary", "string")
    assert not compatible("datetime", "date")
    assert compatible("int", "decimal") and compatible("date", "datetime") and compatible("json", "string")
    assert compatible(None, "int") and compatible("string", None)


def test_values_become_the_canonical_python_value_of_a_kind() -> None:
    plus8 = timezone(timedelta(hours=8))
    assert to_python("datetime", datetime(2026, 1, 1, 8, 0, tzinfo=plus8)) == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert to_python("datetime", datetime(2026, 1, 1, 8, 0)).tzinfo is UTC
    assert to_python("datetime", "2026-01-01 08:00:00.000000+00:00") == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert to_python("decimal", 12.34) == Decimal("12.34")
    assert to_python("decimal", "-0.50") == Decimal("-0.50")
    assert to_python("bool", 1) is True and to_python("bool", "false") is False
    assert to_python("date", "2026-02-03") == date(2026, 2, 3)
    assert to_python("json", {"中": [1]}) == '{"中": [1]}'
    assert to_python("binary", "AP8K") == b"\x00\xff\n"
    assert to_python("int", None) is None


def test_a_cast_from_string_to_int_is_applied_and_a_bad_value_names_the_column() -> None:
    convert = value_converter("string", "int", "int", frozenset({"string", "int"}), "code")
    assert convert is not None and convert(" 42 ") == 42 and convert(None) is None
    with pytest.raises(SourceFailed) as error:
        convert("forty-two")
    assert error.value.reason == "字段转换失败：code"


def test_a_plain_copy_of_canonical_values_is_the_fast_path() -> None:
    columns = [Column("id", "bigint", "int"), Column("name", "longtext", "string")]
    plan = [SelectItem("id", "id", None), SelectItem("name", "name", None)]
    assert row_converter(columns, plan, {"id": "int", "name": "string"}, frozenset({"int", "string"})) is None


def test_the_row_converter_renames_drops_casts_decodes_and_sets_constants() -> None:
    columns = [Column("id", "bigint", "int"), Column("flag", "tinyint(1)", "bool"),
               Column("at", "datetime(6)", "datetime"), Column("code", "varchar(9)", "string")]
    plan = [SelectItem("id", "id", None), SelectItem("ok", "flag", None), SelectItem("at", "at", None),
            SelectItem("code", "code", "int"), SelectItem("src", None, None, constant="mysql", is_constant=True)]
    kinds = {"id": "int", "ok": "bool", "at": "datetime", "code": "int", "src": "string"}
    convert = row_converter(columns, plan, kinds, frozenset({"int", "string"}))
    assert convert is not None
    assert convert((1, 0, datetime(2026, 1, 1), "7")) == (1, False, datetime(2026, 1, 1, tzinfo=UTC), 7, "mysql")

"""File values converted to the value form of the target column (read from PostgreSQL's spelling by its type
map), and Python values written back as file text."""

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from service.connectors.base import base_type
from service.connectors.files.values import Converter, json_ready, to_text
from service.connectors.files.values import converter as form_converter
from service.connectors.postgresql.types import TYPES
from service.sync.types import kind_of_json


def converter(sql_type: str, *, from_text: bool) -> Converter | None:
    return form_converter(TYPES.form_of(sql_type), from_text=from_text)


@pytest.mark.parametrize(("sql_type", "text", "expected"), [
    ("bigint", "42", 42),
    ("integer", "-7", -7),
    ("numeric(14,2)", "-49.95", Decimal("-49.95")),
    ("double precision", "0.14285714285714285", 0.14285714285714285),
    ("boolean", "t", True),
    ("boolean", "FALSE", False),
    ("date", "2026-01-31", date(2026, 1, 31)),
    ("timestamp with time zone", "2026-01-01T08:30:00+08:00",
     datetime(2026, 1, 1, 8, 30, tzinfo=timezone(timedelta(hours=8)))),
    ("timestamp with time zone", "2026-01-01 08:30:00", datetime(2026, 1, 1, 8, 30, tzinfo=UTC)),
    ("timestamp without time zone", "2026-01-01 08:30:00+08", datetime(2026, 1, 1, 0, 30)),
    ("timestamp without time zone", "2026-01-01 08:30:00", datetime(2026, 1, 1, 8, 30)),
    ("time", "08:30:01", time(8, 30, 1)),
    ("bytea", "\\x00ff0a", b"\x00\xff\n"),
    ("bytea", "AP8K", b"\x00\xff\n"),
])
def test_text_converts_by_the_target_type(sql_type, text, expected):
    convert = converter(sql_type, from_text=True)
    assert convert is not None
    assert convert(text) == expected


def test_text_into_text_and_json_columns_passes_unconverted():
    assert converter("text", from_text=True) is None
    assert converter("jsonb", from_text=True) is None
    assert converter("character varying(20)", from_text=True) is None


def test_json_values_into_json_and_text_columns():
    assert converter("jsonb", from_text=False)({"a": 1}) == '{"a": 1}'
    assert converter("jsonb", from_text=False)("plain") == '"plain"'
    assert converter("text", from_text=False)(12) == "12"
    assert converter("text", from_text=False)({"k": "中"}) == '{"k": "中"}'
    assert converter("numeric", from_text=False)(0.1) == Decimal("0.1")
    assert converter("bigint", from_text=False)(3.0) == 3


@pytest.mark.parametrize(("sql_type", "text"), [
    ("bigint", "4.5x"), ("boolean", "maybe"), ("date", "31/01/2026"), ("bytea", "not base64!"),
    ("numeric", "abc"),
])
def test_values_that_do_not_fit_raise(sql_type, text):
    with pytest.raises((ValueError, ArithmeticError)):
        converter(sql_type, from_text=True)(text)


def test_a_fractional_float_is_not_an_integer():
    with pytest.raises(ValueError):
        converter("bigint", from_text=False)(4.5)


def test_values_as_text_and_json():
    moment = datetime(2026, 1, 1, 8, 30, tzinfo=UTC)
    assert [to_text(v) for v in (True, 0.5, Decimal("1.10"), date(2026, 1, 2), moment, b"\x00\x01", {"a": 1})] == [
        "true", "0.5", "1.10", "2026-01-02", "2026-01-01T08:30:00+00:00", "\\x0001", '{"a": 1}']
    assert [json_ready(v) for v in (Decimal("1.10"), date(2026, 1, 2), b"\x00\xff\n", {"a": 1}, 3)] == [
        "1.10", "2026-01-02", "AP8K", {"a": 1}, 3]


def test_kinds_of_json_values_leave_strings_open():
    assert [kind_of_json(v) for v in (1, 1.5, True, {"a": 1}, [1], "2026-01-01", None)] == [
        "int", "float", "bool", "json", "json", None, None]
    assert base_type("numeric(14, 2)") == "numeric"

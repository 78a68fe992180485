"""The mapping plan, its SQL rendering and the Python row transform: pure functions, no database."""

from datetime import date, datetime
from decimal import Decimal

import pytest

from schemas.api import MappingEntry
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.transforms import (
    check_target,
    plan_columns,
    quote_ident,
    row_transform,
    select_expressions,
    sql_literal,
)


def mapping(*entries: dict) -> list[MappingEntry]:
    return [MappingEntry.model_validate(e) for e in entries]


def test_unmentioned_columns_pass_through_and_mapping_renames_drops_and_adds() -> None:
    plan = plan_columns(
        ["id", "code", "secret", "note"],
        mapping(
            {"from": "code", "to": "Code", "type": "int"}, {"from": "secret", "drop": True}, {"to": "k", "value": 1}
        ),
    )
    assert [(p.target, p.source, p.cast, p.is_constant) for p in plan] == [
        ("id", "id", None, False),
        ("Code", "code", "int", False),
        ("note", "note", None, False),
        ("k", None, None, True),
    ]


@pytest.mark.parametrize(
    ("columns", "entries", "message"),
    [
        (["a"], [{"from": "b", "to": "c"}], "源表缺少列：b"),
        (["a", "b"], [{"from": "a", "to": "b"}], "映射目标列重复：b"),
        (["a"], [{"from": "a", "drop": True}], "没有任何列"),
    ],
)
def test_bad_mappings_are_config_errors(columns: list[str], entries: list[dict], message: str) -> None:
    with pytest.raises(ConfigInvalid, match=message):
        plan_columns(columns, mapping(*entries))


def test_planned_columns_must_exist_in_the_target() -> None:
    with pytest.raises(ConfigInvalid, match="缺少列：b"):
        check_target(plan_columns(["a", "b"], None), {"a": "integer"}, "t")


def test_select_casts_only_where_types_differ_and_quotes_identifiers() -> None:
    plan = plan_columns(["id", "code"], mapping({"from": "code", "type": "int"}, {"to": "origin", "value": "it's"}))
    exprs = select_expressions(
        plan, {"id": "integer", "code": "text"}, {"id": "integer", "code": "integer", "origin": "text"}
    )
    assert exprs == [
        '"id" AS "id"',
        'CAST(CAST("code" AS bigint) AS integer) AS "code"',
        "CAST('it''s' AS text) AS \"origin\"",
    ]


def test_identifiers_and_literals_are_quoted_safely() -> None:
    assert quote_ident("sch.tab") == '"sch"."tab"'
    assert quote_ident('a"b') == '"a""b"'
    assert sql_literal("x'); DROP TABLE t; --") == "'x''); DROP TABLE t; --'"
    assert [sql_literal(v) for v in (None, True, 3, 1.5)] == ["NULL", "TRUE", "'3'", "'1.5'"]
    assert sql_literal({"a": "b"}) == "'{\"a\": \"b\"}'"
    with pytest.raises(ConfigInvalid):
        sql_literal("nul\x00")


def test_row_transform_renames_casts_drops_and_sets_constants() -> None:
    columns = ["id", "amount", "flag", "day", "at", "doc", "gone"]
    plan = plan_columns(
        columns,
        mapping(
            {"from": "id", "to": "ident", "type": "string"},
            {"from": "amount", "type": "decimal"},
            {"from": "flag", "type": "bool"},
            {"from": "day", "type": "date"},
            {"from": "at", "type": "datetime"},
            {"from": "doc", "type": "json"},
            {"from": "gone", "drop": True},
            {"to": "n", "value": "7", "type": "int"},
        ),
    )
    transform = row_transform(columns, plan)
    row = transform((5, "1.10", "yes", "2024-02-03", "2024-02-03T04:05:06+00:00", '{"a": 1}', "x"))
    assert row == (
        "5",
        Decimal("1.10"),
        True,
        date(2024, 2, 3),
        datetime.fromisoformat("2024-02-03T04:05:06+00:00"),
        {"a": 1},
        7,
    )
    assert transform((None, None, "0", None, date(2024, 1, 1), None, None))[:5] == (
        None, None, False, None, datetime(2024, 1, 1)
    )


def test_a_value_that_will_not_cast_fails_naming_the_column() -> None:
    transform = row_transform(["n"], plan_columns(["n"], mapping({"from": "n", "type": "int"})))
    assert transform(("12",)) == (12,)
    with pytest.raises(SourceFailed, match="字段转换失败：n"):
        transform(("twelve",))

"""The field mapping (rename, cast, drop, constant) as a plan, rendered either as a SQL select list
pushed into a PostgreSQL source or as a pure Python row function for sources that cannot take SQL.
"""

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from schemas.api import CastType, MappingEntry
from schemas.messages import (
    CONSTANT_NUL,
    NO_COLUMNS_AFTER_MAPPING,
    conversion_failed,
    duplicate_target_column,
    source_column_missing,
    target_columns_missing,
)
from service.connectors.base import SelectItem
from service.sync.errors import ConfigInvalid, SourceFailed

CAST_SQL: dict[str, str] = {
    CastType.INT: "bigint",
    CastType.FLOAT: "double precision",
    CastType.DECIMAL: "numeric",
    CastType.STRING: "text",
    CastType.BOOL: "boolean",
    CastType.DATE: "date",
    CastType.DATETIME: "timestamp with time zone",
    CastType.JSON: "jsonb",
}


def plan_columns(source_columns: Sequence[str], mapping: Sequence[MappingEntry] | None) -> list[SelectItem]:
    """Target columns in source order; unmentioned source columns pass through under their own name."""
    entries = list(mapping or [])
    known = set(source_columns)
    for entry in entries:
        if entry.from_ is not None and entry.from_ not in known:
            raise ConfigInvalid(source_column_missing(entry.from_))
    dropped = {e.from_ for e in entries if e.drop}
    plan: list[SelectItem] = []
    for name in source_columns:
        mapped = [e for e in entries if e.from_ == name and not e.drop]
        if mapped:
            plan.extend(SelectItem(target=e.target_name, source=name, cast=e.type) for e in mapped)
        elif name not in dropped:
            plan.append(SelectItem(target=name, source=name, cast=None))
    for entry in entries:
        if entry.from_ is None and not entry.drop:
            plan.append(
                SelectItem(
                    target=entry.target_name, source=None, cast=entry.type, constant=entry.value, is_constant=True
                )
            )
    seen: set[str] = set()
    for item in plan:
        if item.target in seen:
            raise ConfigInvalid(duplicate_target_column(item.target))
        seen.add(item.target)
    if not plan:
        raise ConfigInvalid(NO_COLUMNS_AFTER_MAPPING)
    return plan


def check_target(plan: Sequence[SelectItem], target_types: dict[str, str], table: str) -> None:
    """Every planned column must exist in the target, or COPY would fail half-way through a run."""
    missing = [item.target for item in plan if item.target not in target_types]
    if missing:
        raise ConfigInvalid(target_columns_missing(table, missing))


def quote_ident(name: str) -> str:
    """Quote a possibly schema-qualified identifier, part by part."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def sql_literal(value: Any) -> str:
    """A constant as a safe SQL literal (standard_conforming_strings on, which the connector sets)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | Decimal):
        return f"'{value}'"
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    if "\x00" in text:
        raise ConfigInvalid(CONSTANT_NUL)
    return "'" + text.replace("'", "''") + "'"


def select_expressions(
    plan: Sequence[SelectItem], source_types: dict[str, str], target_types: dict[str, str]
) -> list[str]:
    """One SQL expression per planned column, cast to the target's type so binary COPY matches it."""
    out: list[str] = []
    for item in plan:
        if item.is_constant:
            expr, current = sql_literal(item.constant), "unknown"
        else:
            expr, current = quote_ident(item.source or ""), source_types.get(item.source or "", "")
        if item.cast is not None:
            expr, current = f"CAST({expr} AS {CAST_SQL[item.cast]})", CAST_SQL[item.cast]
        wanted = target_types[item.target]
        if current != wanted:
            expr = f"CAST({expr} AS {wanted})"
        out.append(f"{expr} AS {quote_ident(item.target)}")
    return out


def _to_int(value: Any) -> int:
    if isinstance(value, str):
        return int(Decimal(value.strip()))
    return int(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"true", "t", "1", "yes", "y", "on"}:
            return True
        if text in {"false", "f", "0", "no", "n", "off"}:
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return bool(value)


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value).strip())


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.fromisoformat(str(value).strip())


def _to_string(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _to_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


PY_CASTS: dict[str, Callable[[Any], Any]] = {
    CastType.INT: _to_int,
    CastType.FLOAT: float,
    CastType.DECIMAL: lambda v: Decimal(str(v).strip()),
    CastType.STRING: _to_string,
    CastType.BOOL: _to_bool,
    CastType.DATE: _to_date,
    CastType.DATETIME: _to_datetime,
    CastType.JSON: _to_json,
}


def cast_value(cast: str, value: Any, column: str) -> Any:
    """Apply one mapping cast in Python; None stays None, a value that will not convert fails the run."""
    if value is None:
        return None
    try:
        return PY_CASTS[cast](value)
    except (ValueError, TypeError, InvalidOperation, json.JSONDecodeError) as exc:
        raise SourceFailed(conversion_failed(column), detail=type(exc).__name__) from exc


def _step(item: SelectItem, index: dict[str, int]) -> Callable[[Sequence[Any]], Any]:
    if item.is_constant:
        constant = item.constant if item.cast is None else cast_value(item.cast, item.constant, item.target)
        return lambda _row: constant
    position, cast, name = index[item.source or ""], item.cast, item.target
    if cast is None:
        return lambda row: row[position]
    return lambda row: cast_value(cast, row[position], name)


def row_transform(
    source_columns: Sequence[str], plan: Sequence[SelectItem]
) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """A function from a source row (in `source_columns` order) to a target row (in plan order)."""
    index = {name: i for i, name in enumerate(source_columns)}
    steps = [_step(item, index) for item in plan]
    return lambda row: tuple(step(row) for step in steps)

"""JSON records as rows: a dotted path into a response, columns learned from records, and values turned
into what the target column's type wants (JSON carries int, float, string, bool and json natively;
decimals, dates, datetimes and binary travel as strings: decimal text, RFC 3339, base64).

Shared by the JSON-speaking sources (HTTP APIs, Kafka topics), which cannot push the mapping into SQL and
so apply it here in Python, then decode each value by the kind of the target column it lands in.
"""

import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from decimal import InvalidOperation
from typing import Any

from service.connectors.base import KINDS, Column, SelectItem
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.transforms import row_transform
from service.sync.types import kind_of_json, kind_of_mysql, kind_of_postgresql, kind_of_sqlite, to_python

_MISSING = object()


def at_path(document: Any, path: str | None) -> Any:
    """The value at a dotted path (`data.items`), or `_MISSING`; an empty path is the document itself."""
    value = document
    for part in (path or "").split(".") if path else []:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def is_missing(value: Any) -> bool:
    return value is _MISSING


_JSON_TYPE = {"bool": "boolean", "int": "integer", "float": "number", "json": "object"}


def declared_columns(declared: Any) -> list[Column]:
    """`params.columns`: names, or `{"name", "kind"}` objects, for records whose shape cannot be sampled."""
    columns = []
    for item in declared:
        name, kind = (item, "string") if isinstance(item, str) else (item.get("name"), item.get("kind", "string"))
        if not isinstance(name, str) or not name:
            raise ConfigInvalid("params.columns 的每一项须为列名或 {name, kind}")
        if kind not in KINDS:
            raise ConfigInvalid(f"params.columns 中的类型无效：{kind}")
        columns.append(Column(name, _JSON_TYPE.get(kind, "string"), kind))
    return columns


def learned_columns(records: Iterable[dict[str, Any]]) -> list[Column]:
    """Keys in first-seen order, each with the kind of its first value that settles one."""
    kinds: dict[str, str | None] = {}
    for record in records:
        for key, value in record.items():
            if kinds.get(key) is None:
                kinds[key] = kind_of_json(value)
    return [Column(k, _JSON_TYPE.get(kind or "", "string"), kind) for k, kind in kinds.items()]


def target_kind(sql_type: str) -> str | None:
    """The canonical kind of a target column, read as PostgreSQL, MySQL or SQLite spell their types (the
    engine hands over the target's spelling without naming the system); None leaves the value as it is."""
    if sql_type in KINDS:
        return sql_type
    return kind_of_postgresql(sql_type) or kind_of_mysql(sql_type) or kind_of_sqlite(sql_type)


def _as_json_text(value: Any) -> Any:
    """JSON carries json natively, so even a string is a JSON value here (a string scalar), not JSON text."""
    return None if value is None else json.dumps(value, ensure_ascii=False)


def row_decoder(
    columns: Sequence[str], plan: Sequence[SelectItem], target_types: dict[str, str]
) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function from one JSON record to a target row: the mapping first, then each value decoded to
    its target column's kind. A value that will not convert fails the run naming the column."""
    transform = row_transform(columns, plan)
    names = [item.target for item in plan]
    kinds = [target_kind(target_types[name]) if name in target_types else None for name in names]

    def decode(record: dict[str, Any]) -> tuple[Any, ...]:
        values = transform([record.get(name) for name in columns])
        out = []
        for name, kind, value in zip(names, kinds, values, strict=True):
            try:
                out.append(_as_json_text(value) if kind == "json" else to_python(kind, value))
            except (ValueError, TypeError, InvalidOperation, binascii.Error) as exc:
                raise SourceFailed(f"字段转换失败：{name}", detail=type(exc).__name__) from exc
        return tuple(out)

    return decode

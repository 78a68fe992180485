"""JSON records as rows: a dotted path into a response, columns learned from records, and values turned
into what the target column's type wants (JSON carries int, float, string, bool and json natively;
decimals, dates, datetimes and binary travel as strings: decimal text, RFC 3339, base64).

Shared by the JSON-speaking sources (HTTP APIs, Kafka topics), which cannot push the mapping into SQL and
so apply it here in Python, then decode each value by the kind of the target column it lands in (read
with the target's own type map). `RECORD_TYPES` is the type map of the connectors without a type system
of their own (files, Kafka topics): how they spell a kind, and how they read what they spelled.
"""

import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from decimal import InvalidOperation
from typing import Any

from schemas.messages import RECORD_COLUMNS_SHAPE, columns_kind_invalid, conversion_failed
from service.connectors.base import KINDS, Column, SelectItem, TargetTypes, TypeMap, base_type
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.transforms import row_transform
from service.sync.types import kind_of_json, to_python

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
            raise ConfigInvalid(RECORD_COLUMNS_SHAPE)
        if kind not in KINDS:
            raise ConfigInvalid(columns_kind_invalid(kind))
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


_SPELLED = {
    "int": "bigint", "float": "double precision", "decimal": "numeric", "string": "text", "bool": "boolean",
    "date": "date", "datetime": "timestamp with time zone", "json": "jsonb", "binary": "bytea",
}
"""A kind spelled as a SQL type (the widely read spelling PostgreSQL uses): how a file connector types a
column it knows the kind of."""

_READ: dict[str, tuple[str, str]] = {
    **{spelled: (kind, kind) for kind, spelled in _SPELLED.items()},
    **{kind: (kind, kind) for kind in KINDS},
    "datetime": ("datetime", "timestamp"),
    "integer": ("int", "int"),
    "text": ("string", "string"),
}
"""What the record connectors' spellings read as: (kind, value form). They spell columns as `_SPELLED`
does, as kinds (Kafka), as JSON Schema names (`_JSON_TYPE`), or `text` (CSV); a column spelled as the
kind `datetime` takes a datetime without its offset, as it always has."""


def _record_kind(native: str) -> str | None:
    read = _READ.get(base_type(native))
    return read[0] if read else None


RECORD_TYPES = TypeMap(native=_SPELLED, kinds=_record_kind, forms={name: form for name, (_, form) in _READ.items()})


def _as_json_text(value: Any) -> Any:
    """JSON carries json natively, so even a string is a JSON value here (a string scalar), not JSON text."""
    return None if value is None else json.dumps(value, ensure_ascii=False)


def row_decoder(
    columns: Sequence[str], plan: Sequence[SelectItem], target_types: TargetTypes
) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function from one JSON record to a target row: the mapping first, then each value decoded to
    its target column's kind. A value that will not convert fails the run naming the column."""
    transform = row_transform(columns, plan)
    names = [item.target for item in plan]
    kinds = [target_types.kind(name) for name in names]

    def decode(record: dict[str, Any]) -> tuple[Any, ...]:
        values = transform([record.get(name) for name in columns])
        out = []
        for name, kind, value in zip(names, kinds, values, strict=True):
            try:
                out.append(_as_json_text(value) if kind == "json" else to_python(kind, value))
            except (ValueError, TypeError, InvalidOperation, binascii.Error) as exc:
                raise SourceFailed(conversion_failed(name), detail=type(exc).__name__) from exc
        return tuple(out)

    return decode

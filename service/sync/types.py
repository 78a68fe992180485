"""The canonical kinds of `service.connectors.base.KINDS` in Python: which kinds widen to which, the
kind of a JSON value or a constant, and how a value of any system becomes the Python value of a kind.

Nothing here knows a system: each connector reads and spells its own types (`TypeMap` in
`service/connectors/<kind>/types.py`); docs/types.md is the table in prose. Import-free of drivers, so
every connector can use it.
"""

import base64
import functools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from schemas.messages import conversion_failed
from service.connectors.base import Column, SelectItem
from service.sync.errors import SourceFailed
from service.sync.transforms import cast_value

_WIDENS = {
    "int": {"float", "decimal", "string", "bool"},
    "float": {"decimal", "string"},
    "decimal": {"float", "string"},
    "bool": {"int", "string"},
    "date": {"datetime", "string"},
    "datetime": {"string"},
    "json": {"string"},
    "string": {"json"},
}


def compatible(source_kind: str | None, target_kind: str | None) -> bool:
    """Whether every value of `source_kind` fits a `target_kind` column; unknown kinds are not judged."""
    if source_kind is None or target_kind is None or source_kind == target_kind:
        return True
    return target_kind in _WIDENS.get(source_kind, set())


def kind_of_json(value: Any) -> str | None:
    """The canonical kind a JSON value settles by itself; None for null and for a string, which may
    carry a decimal, a date, a datetime or base64 binary as well as text: its kind is the target's."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, dict | list):
        return "json"
    return None


def kind_of_value(value: Any) -> str:
    """The kind of a mapping constant, for a created column: a JSON value's own kind, a Decimal's, or text."""
    if isinstance(value, Decimal):
        return "decimal"
    return kind_of_json(value) or "string"


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already (our stored convention)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return as_utc(datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")))


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value).strip()[:10])


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes", "y", "on")
    if isinstance(value, bytes):
        return any(value)
    return bool(value)


def _json(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _string(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    return str(value)


def _binary(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return base64.b64decode(value) if isinstance(value, str) else bytes(value)


def _int(value: Any) -> int:
    return int(Decimal(value.strip())) if isinstance(value, str) else int(value)


def _float(value: Any) -> float:
    return float(value)


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value).strip())


TO_PYTHON: dict[str, Callable[[Any], Any]] = {
    "int": _int, "float": _float, "decimal": _decimal, "string": _string, "bool": _bool, "date": _date,
    "datetime": _datetime, "json": _json, "binary": _binary,
}
"""A value of any system as the canonical Python value of a kind: int, float, Decimal, str, bool, date,
aware UTC datetime, JSON text, bytes. Raises ValueError/TypeError on a value that does not fit."""


def to_python(kind: str | None, value: Any) -> Any:
    if value is None or kind is None:
        return value
    return TO_PYTHON[kind](value)


_CANONICAL_AFTER_CAST = frozenset({"int", "float", "decimal", "string", "bool", "date"})


def _fitted(steps: list[Callable[[Any], Any]], column: str) -> Callable[[Any], Any]:
    """One function per column (None passes; a failure names the column): the hot loop of a chunk."""
    if len(steps) == 1:
        only = steps[0]

        def convert_one(value: Any) -> Any:
            if value is None:
                return None
            try:
                return only(value)
            except (ValueError, TypeError, ArithmeticError, UnicodeDecodeError) as exc:
                raise SourceFailed(conversion_failed(column), detail=type(exc).__name__) from exc

        return convert_one

    def convert(value: Any) -> Any:
        if value is None:
            return None
        try:
            for step in steps:
                value = step(value)
            return value
        except (ValueError, TypeError, ArithmeticError, UnicodeDecodeError) as exc:
            raise SourceFailed(conversion_failed(column), detail=type(exc).__name__) from exc

    return convert


def value_converter(
    source_kind: str | None, cast: str | None, target_kind: str | None, canonical: frozenset[str], column: str
) -> Callable[[Any], Any] | None:
    """Decode a driver value of `source_kind` (unless the driver already gives the canonical Python value),
    apply the mapping cast, and fit the target's kind; None when the value passes unchanged."""
    steps: list[Callable[[Any], Any]] = []
    current, ready = source_kind, source_kind is None or source_kind in canonical
    if not ready and source_kind is not None:
        steps.append(TO_PYTHON[source_kind])
        ready = True
    if cast is not None:
        steps.append(functools.partial(cast_value, cast, column=column))
        current, ready = cast, cast in _CANONICAL_AFTER_CAST
    if target_kind is not None and (target_kind != current or not ready):
        steps.append(TO_PYTHON[target_kind])
    return _fitted(steps, column) if steps else None


def _constant(value: Any) -> Callable[[Any], Any]:
    return lambda _value: value


def row_converter(
    source_columns: Sequence[Column], plan: Sequence[SelectItem], target_kinds: dict[str, str | None],
    canonical: frozenset[str],
) -> Callable[[Sequence[Any]], tuple[Any, ...]] | None:
    """A function from a driver row (in `source_columns` order) to the target row of the mapping plan, or
    None when every column passes unchanged in the same order (the fast path)."""
    index = {c.name: i for i, c in enumerate(source_columns)}
    kinds = {c.name: c.kind for c in source_columns}
    specs: list[tuple[int, Callable[[Any], Any] | None]] = []
    for item in plan:
        target = target_kinds.get(item.target)
        if item.is_constant:
            value = item.constant
            fit = value_converter(kind_of_value(value) if value is not None else None, item.cast, target,
                                  canonical | {"json"}, item.target)
            specs.append((0, _constant(fit(value) if fit else value)))
            continue
        fn = value_converter(kinds.get(item.source or ""), item.cast, target, canonical, item.target)
        specs.append((index[item.source or ""], fn))
    if len(specs) == len(source_columns) and all(f is None and i == n for n, (i, f) in enumerate(specs)):
        return None
    return lambda row: tuple([row[i] if f is None else f(row[i]) for i, f in specs])

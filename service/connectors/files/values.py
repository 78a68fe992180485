"""Values read from files, converted to the value form a target column takes (`base.FORMS`, which the
target's type map reads from its spelling), and Python values written back as file text.

Binary drivers (asyncpg's `copy_records_to_table`) need `int`, `Decimal`, `date`, `bytes`… not text, so a
file source converts each value by the target column's form. The file encodings of each canonical kind:

    int, float     decimal digits (JSON: numbers)
    decimal        its exact digits as text, never a float (JSON: a string)
    bool           true/false (also t/f, 1/0, yes/no on input)
    date           ISO 8601 `2026-01-31`
    datetime       ISO 8601 with offset `2026-01-31T08:30:00+08:00`; input without an offset is UTC, and
                   a column without a time zone holds UTC wall-clock time
    json           the JSON text (JSON Lines: the nested value itself)
    binary         `\\x` + hex (PostgreSQL's form) in CSV, base64 in JSON Lines; both read either way
    string         as is
"""

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

Converter = Callable[[Any], Any]

_TRUE = frozenset({"true", "t", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "f", "0", "no", "n", "off"})


def _int(value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return int(Decimal(value.strip()))
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not an integer")
    return int(value)


def _float(value: Any) -> float:
    return float(value)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, bool):
        raise ValueError("not a number")
    return value if isinstance(value, Decimal) else Decimal(str(value).strip())


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean")


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text).date()


def _aware(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _naive(value: Any) -> datetime:
    """A `timestamp without time zone` holds UTC wall-clock time (docs/types.md)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _time(value: Any) -> time:
    return value if isinstance(value, time) else time.fromisoformat(str(value).strip())


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    text = str(value).strip()
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    return base64.b64decode(text, validate=True)


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _json_value(value: Any) -> str:
    """A JSON column from a JSON value (JSON Lines): a string is a JSON string, not a document."""
    return json.dumps(value, ensure_ascii=False, default=str)


def to_text(value: Any) -> str:
    """Any value as text for a text column or a CSV field (see the module docstring for each kind)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


_BY_FORM: dict[str, Converter] = {
    "int": _int, "float": _float, "decimal": _decimal, "bool": _bool, "date": _date, "datetime": _aware,
    "timestamp": _naive, "time": _time, "binary": _bytes, "uuid": _uuid,
}


def converter(form: str | None, *, from_text: bool) -> Converter | None:
    """The conversion a value of a file needs for a column of value form `form`, or None when it passes
    as is (an unknown form: the target takes the value as the file has it).

    `from_text` says the file carries text (CSV), so a JSON column takes the text as the document; JSON
    Lines carries JSON values, so its strings, numbers and objects are all re-encoded for a JSON column.
    """
    if form == "json":
        return None if from_text else _json_value
    if form == "string":
        return None if from_text else _text_or_none
    return _BY_FORM.get(form or "")


def _text_or_none(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else to_text(value)


def json_ready(value: Any) -> Any:
    """A Python value as JSON Lines writes it (see the module docstring for each kind)."""
    if value is None or isinstance(value, str | bool | int | float | dict | list):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


_BOOL_TEXT = {**dict.fromkeys(("t", "true", "TRUE", "True", "1"), True),
              **dict.fromkeys(("f", "false", "FALSE", "False", "0"), False)}


def _aware_text(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_FAST_TEXT: dict[str, Converter] = {
    "int": int, "float": float, "decimal": Decimal, "bool": _BOOL_TEXT.__getitem__, "date": date.fromisoformat,
    "datetime": _aware_text,
}


def fast_text_converter(form: str | None) -> Converter | None:
    """A C-speed conversion of well-formed text (`int`, `Decimal`, `date.fromisoformat`…) for a column of
    value form `form`, tried first on a whole column; `converter` is the lenient fallback that names bad
    values."""
    return _FAST_TEXT.get(form or "")

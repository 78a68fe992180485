"""Values read from files, converted to the Python type a target column wants (by its `sql_type`), and
Python values written back as file text.

Binary drivers (asyncpg's `copy_records_to_table`) need `int`, `Decimal`, `date`, `bytes`… not text, so a
file source converts each value by the target column's type. The file encodings of each canonical kind:

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
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from service.sync.types import NATIVE

Converter = Callable[[Any], Any]

_TRUE = frozenset({"true", "t", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "f", "0", "no", "n", "off"})
_MODIFIERS = re.compile(r"\(.*?\)")


def base_type(sql_type: str) -> str:
    """`numeric(14,2)` → `numeric`, `character varying(20)` → `character varying`; arrays stay marked."""
    return _MODIFIERS.sub("", sql_type).strip().lower()


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


_BY_TYPE: dict[str, Converter] = {
    **dict.fromkeys(("bigint", "integer", "smallint", "int", "int2", "int4", "int8", "tinyint", "mediumint",
                     "serial", "bigserial"), _int),
    **dict.fromkeys(("double precision", "real", "float", "float4", "float8", "double"), _float),
    **dict.fromkeys(("numeric", "decimal"), _decimal),
    **dict.fromkeys(("boolean", "bool"), _bool),
    "date": _date,
    **dict.fromkeys(("timestamp with time zone", "timestamptz"), _aware),
    **dict.fromkeys(("timestamp without time zone", "timestamp", "datetime"), _naive),
    **dict.fromkeys(("time", "time without time zone"), _time),
    **dict.fromkeys(("bytea", "blob", "binary", "varbinary", "longblob", "mediumblob", "tinyblob"), _bytes),
    "uuid": _uuid,
}
_TEXT = frozenset({"text", "character varying", "varchar", "character", "char", "bpchar", "name", "citext",
                   "string", "longtext", "mediumtext", "tinytext", "enum"})


def converter(sql_type: str, *, from_text: bool) -> Converter | None:
    """The conversion a value of a file needs for a column of `sql_type`, or None when it passes as is.

    `from_text` says the file carries text (CSV), so a JSON column takes the text as the document; JSON
    Lines carries JSON values, so its strings, numbers and objects are all re-encoded for a JSON column.
    """
    kind = base_type(sql_type)
    if kind in ("json", "jsonb"):
        return None if from_text else _json_value
    if kind in _TEXT:
        return None if from_text else _text_or_none
    return _BY_TYPE.get(kind)


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


SQL_OF_KIND: dict[str, str] = NATIVE["postgresql"]
"""A canonical kind spelled as a SQL type (PostgreSQL's spelling, which every kind reader understands): how a
file connector types a column it knows the kind of, so a database source hands over values of that kind."""


_BOOL_TEXT = {**dict.fromkeys(("t", "true", "TRUE", "True", "1"), True),
              **dict.fromkeys(("f", "false", "FALSE", "False", "0"), False)}


def _aware_text(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_FAST_TEXT: dict[str, Converter] = {
    **dict.fromkeys(("bigint", "integer", "smallint", "int", "int2", "int4", "int8", "tinyint", "mediumint"), int),
    **dict.fromkeys(("double precision", "real", "float", "float4", "float8", "double"), float),
    **dict.fromkeys(("numeric", "decimal"), Decimal),
    **dict.fromkeys(("boolean", "bool"), _BOOL_TEXT.__getitem__),
    "date": date.fromisoformat,
    **dict.fromkeys(("timestamp with time zone", "timestamptz"), _aware_text),
}


def fast_text_converter(sql_type: str) -> Converter | None:
    """A C-speed conversion of well-formed text (`int`, `Decimal`, `date.fromisoformat`…) for a column of
    `sql_type`, tried first on a whole column; `converter` is the lenient fallback that names bad values."""
    return _FAST_TEXT.get(base_type(sql_type))

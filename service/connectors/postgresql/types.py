"""PostgreSQL's type spellings (`format_type`) as kinds and value forms, and the types of created
columns: the `TypeMap` the PostgreSQL source and target declare (docs/types.md)."""

from service.connectors.base import TypeMap

_KINDS: dict[str, str] = {
    "smallint": "int", "integer": "int", "bigint": "int", "int2": "int", "int4": "int", "int8": "int",
    "real": "float", "double precision": "float", "float4": "float", "float8": "float",
    "numeric": "decimal", "decimal": "decimal", "money": "decimal",
    "text": "string", "character varying": "string", "character": "string", "varchar": "string",
    "char": "string", "name": "string", "uuid": "string", "citext": "string",
    "boolean": "bool", "bool": "bool", "date": "date",
    "timestamp with time zone": "datetime", "timestamp without time zone": "datetime", "timestamptz": "datetime",
    "timestamp": "datetime", "json": "json", "jsonb": "json", "bytea": "binary",
}

NATIVE = {
    "int": "bigint", "float": "double precision", "decimal": "numeric", "string": "text", "bool": "boolean",
    "date": "date", "datetime": "timestamp with time zone", "json": "jsonb", "binary": "bytea",
}
"""What a created column is called, per kind."""

FORMS: dict[str, str] = {
    **dict.fromkeys(("bigint", "integer", "smallint", "int", "int2", "int4", "int8", "serial", "bigserial"), "int"),
    **dict.fromkeys(("double precision", "real", "float4", "float8"), "float"),
    **dict.fromkeys(("numeric", "decimal"), "decimal"),
    **dict.fromkeys(("boolean", "bool"), "bool"),
    "date": "date",
    **dict.fromkeys(("timestamp with time zone", "timestamptz"), "datetime"),
    **dict.fromkeys(("timestamp without time zone", "timestamp"), "timestamp"),
    **dict.fromkeys(("time", "time without time zone"), "time"),
    "bytea": "binary",
    "uuid": "uuid",
    **dict.fromkeys(("json", "jsonb"), "json"),
    **dict.fromkeys(("text", "character varying", "varchar", "character", "char", "bpchar", "name", "citext"),
                    "string"),
}
"""What asyncpg's binary COPY takes for each type: a `timestamp` a naive datetime, `uuid` a UUID…"""


def _base(native: str) -> str:
    return native.strip().lower().split("(")[0].replace(" unsigned", "").strip()


def kind_of(native: str) -> str | None:
    """`format_type` spelling → kind; arrays and unknown types have none."""
    if native.endswith("[]"):
        return None
    return _KINDS.get(_base(native))


TYPES = TypeMap(native=NATIVE, kinds=kind_of, forms=FORMS)

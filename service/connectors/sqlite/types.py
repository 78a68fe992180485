"""SQLite's declared types as kinds and value forms, and the types of created columns: the `TypeMap` the
SQLite source and target declare (docs/types.md). SQLite takes any declared type name, so the forms read
the common SQL spellings too."""

from service.connectors.base import TypeMap

NATIVE = {
    "int": "INTEGER", "float": "REAL", "decimal": "DECIMAL_TEXT", "string": "TEXT", "bool": "BOOLEAN",
    "date": "DATE", "datetime": "DATETIME", "json": "JSON", "binary": "BLOB",
}
"""What a created column is called, per kind."""

_NAMED = {"BOOLEAN": "bool", "BOOL": "bool", "DATE": "date", "DATETIME": "datetime", "TIMESTAMP": "datetime",
          "JSON": "json", "DECIMAL": "decimal", "NUMERIC": "decimal", "DECIMAL_TEXT": "decimal"}

FORMS: dict[str, str] = {
    **dict.fromkeys(("bigint", "integer", "smallint", "int", "int2", "int4", "int8", "tinyint", "mediumint",
                     "serial", "bigserial"), "int"),
    **dict.fromkeys(("double precision", "real", "float", "float4", "float8", "double"), "float"),
    **dict.fromkeys(("numeric", "decimal"), "decimal"),
    **dict.fromkeys(("boolean", "bool"), "bool"),
    "date": "date",
    **dict.fromkeys(("timestamp with time zone", "timestamptz"), "datetime"),
    **dict.fromkeys(("timestamp without time zone", "timestamp", "datetime"), "timestamp"),
    **dict.fromkeys(("time", "time without time zone"), "time"),
    **dict.fromkeys(("bytea", "blob", "binary", "varbinary", "longblob", "mediumblob", "tinyblob"), "binary"),
    "uuid": "uuid",
    **dict.fromkeys(("json", "jsonb"), "json"),
    **dict.fromkeys(("text", "character varying", "varchar", "character", "char", "bpchar", "name", "citext",
                     "string", "longtext", "mediumtext", "tinytext", "enum"), "string"),
}
"""What a file value becomes for each declared type (lower-cased): the target stores it through its
adapter (`sqlite/target.py`), so DATETIME and TIMESTAMP take naive UTC wall-clock time."""


def kind_of(native: str) -> str | None:
    """A declared type → kind: the names we create first, then SQLite's affinity rules."""
    text = native.strip().upper()
    base = text.split("(")[0].strip()
    if base in _NAMED:
        return _NAMED[base]
    if "INT" in base:
        return "int"
    if any(word in base for word in ("CHAR", "CLOB", "TEXT")):
        return "string"
    if base == "BLOB" or not base:
        return "binary" if base == "BLOB" else None
    if any(word in base for word in ("REAL", "FLOA", "DOUB")):
        return "float"
    return None


TYPES = TypeMap(native=NATIVE, kinds=kind_of, forms=FORMS)

"""MySQL's and MariaDB's type spellings (COLUMN_TYPE) as kinds and value forms, and the types of created
columns: the `TypeMap` the MySQL source and target declare (docs/types.md)."""

from service.connectors.base import TypeMap

_KINDS: dict[str, str] = {
    "tinyint": "int", "smallint": "int", "mediumint": "int", "int": "int", "integer": "int", "bigint": "int",
    "year": "int", "float": "float", "double": "float", "real": "float", "decimal": "decimal",
    "numeric": "decimal", "char": "string", "varchar": "string", "tinytext": "string", "text": "string",
    "mediumtext": "string", "longtext": "string", "enum": "string", "set": "string", "time": "string",
    "bool": "bool", "boolean": "bool", "bit": "bool", "date": "date", "datetime": "datetime",
    "timestamp": "datetime", "json": "json", "binary": "binary", "varbinary": "binary", "tinyblob": "binary",
    "blob": "binary", "mediumblob": "binary", "longblob": "binary",
}

NATIVE = {
    "int": "bigint", "float": "double", "decimal": "decimal(38,10)", "string": "longtext", "bool": "tinyint(1)",
    "date": "date", "datetime": "datetime(6)", "json": "json", "binary": "longblob",
}
"""What a created column is called, per kind."""

FORMS: dict[str, str] = {
    **dict.fromkeys(("bigint", "integer", "smallint", "int", "tinyint", "mediumint"), "int"),
    **dict.fromkeys(("double", "real", "float"), "float"),
    **dict.fromkeys(("numeric", "decimal"), "decimal"),
    **dict.fromkeys(("boolean", "bool"), "bool"),
    "date": "date",
    **dict.fromkeys(("datetime", "timestamp"), "timestamp"),
    "time": "time",
    **dict.fromkeys(("binary", "varbinary", "blob", "longblob", "mediumblob", "tinyblob"), "binary"),
    "json": "json",
    **dict.fromkeys(("char", "varchar", "text", "longtext", "mediumtext", "tinytext", "enum"), "string"),
}
"""What a file value becomes for each type: DATETIME holds naive UTC wall-clock time."""


def _base(native: str) -> str:
    return native.strip().lower().split("(")[0].replace(" unsigned", "").strip()


def kind_of(native: str) -> str | None:
    """COLUMN_TYPE spelling → kind; `tinyint(1)` is MySQL's boolean, `bit(1)` too."""
    text = native.strip().lower()
    if text.startswith("tinyint(1)") or text == "bit(1)":
        return "bool"
    if text.startswith("bit"):
        return "int"
    return _KINDS.get(_base(text))


TYPES = TypeMap(native=NATIVE, kinds=kind_of, forms=FORMS)

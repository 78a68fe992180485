"""The memory target's type spellings, ClickHouse's: a decimal keeps its shape, datetimes are UTC."""

from service.connectors.base import TypeMap, base_type

NATIVE = {
    "int": "Int64", "float": "Float64", "decimal": "Decimal(38,10)", "string": "String", "bool": "Bool",
    "date": "Date32", "datetime": "DateTime64(6,'UTC')", "json": "JSON", "binary": "String",
}
_READ = {"int64": "int", "float64": "float", "decimal": "decimal", "string": "string", "bool": "bool",
         "date32": "date", "datetime64": "datetime", "json": "json"}


def kind_of(native: str) -> str | None:
    return _READ.get(base_type(native))


TYPES = TypeMap(native=NATIVE, kinds=kind_of, forms=_READ)

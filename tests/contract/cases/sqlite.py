"""SQLite as a contract case: a file in the test's scratch folder with every field of the dataset in the
storage the connector documents (booleans 0/1, ISO dates, UTC datetime text, JSON text, BLOBs)."""

import json
import sqlite3
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from schemas.api import SourceSpec
from service.connectors.sqlite import KIND
from service.sync.model import Endpoint
from tests.contract.harness import FIELDS, Context, Field
from tests.support.policy import policy_for

COLUMN_TYPES = {"int": "INTEGER", "string": "TEXT", "decimal": "DECIMAL(14,2)", "float": "REAL", "bool": "BOOLEAN",
                "date": "DATE", "datetime": "DATETIME", "json": "JSON", "binary": "BLOB"}


def ddl(table: str, fields: list[Field]) -> str:
    columns = ", ".join(f'"{f.name}" {COLUMN_TYPES[f.kind]}' + (" PRIMARY KEY" if f.name == "id" else "")
                        for f in fields)
    return f'CREATE TABLE "{table}" ({columns})'


def stored(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def sqlite_execute(path: Path, sql: str, rows: list[tuple] | None = None) -> None:
    with sqlite3.connect(path) as conn:
        if rows is None:
            conn.execute(sql)
        else:
            conn.executemany(sql, rows)
    conn.close()


def sqlite_rows(path: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    try:
        cursor = conn.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        conn.close()


class SQLiteCase:
    name = "sqlite"
    fields = FIELDS
    modes = KIND.modes

    def __init__(self, ctx: Context) -> None:
        self.path = ctx.tmp_dir / "contract.db"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(type="sqlite", url=f"sqlite://{self.path}", policy=policy_for())

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        names = ", ".join(f'"{f.name}"' for f in self.fields)
        values = ", ".join(["?"] * len(self.fields))
        sqlite_execute(self.path, f'INSERT INTO "{table}" ({names}) VALUES ({values})',
                       [tuple(stored(r[f.name]) for f in self.fields) for r in rows])

    async def seed(self, table: str, rows: list[dict[str, Any]]) -> tuple[Endpoint, SourceSpec]:
        sqlite_execute(self.path, ddl(table, self.fields))
        self.insert(table, rows)
        return self.endpoint, SourceSpec(table=table)

    async def missing(self) -> tuple[Endpoint, SourceSpec]:
        sqlite_execute(self.path, "CREATE TABLE IF NOT EXISTS present (id INTEGER PRIMARY KEY)")
        return self.endpoint, SourceSpec(table=f"missing_{uuid.uuid4().hex[:8]}")

    def unreachable(self, port: int) -> None:
        return None

    async def create(self, table: str) -> Endpoint:
        sqlite_execute(self.path, ddl(table, self.fields))
        return self.endpoint

    async def read(self, endpoint: Endpoint, table: str) -> list[dict[str, Any]]:
        return sqlite_rows(self.path, f'SELECT * FROM "{table}"')


SOURCE_CASES = [SQLiteCase]
TARGET_CASES = [SQLiteCase]

"""PostgreSQL as a contract case, and the reference source and target the other cases are checked against."""

import json
import uuid
from typing import Any

import asyncpg

from schemas.api import SourceSpec
from service.connectors.postgresql import KIND
from service.sync.model import Endpoint
from tests.contract.harness import FIELDS, Context, Field

COLUMN_TYPES = {"int": "bigint", "string": "text", "decimal": "numeric(14,2)", "float": "double precision",
                "bool": "boolean", "date": "date", "datetime": "timestamptz", "json": "jsonb", "binary": "bytea"}


def ddl(table: str, fields: list[Field]) -> str:
    columns = ", ".join(f'"{f.name}" {COLUMN_TYPES[f.kind]}' + (" PRIMARY KEY" if f.name == "id" else "")
                        for f in fields)
    return f'CREATE TABLE "{table}" ({columns})'


class PostgresCase:
    name = "postgresql"
    fields = FIELDS
    modes = KIND.modes

    def __init__(self, ctx: Context) -> None:
        self.dsn = ctx.pg_dsn

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(type="postgresql", url=self.dsn)

    async def _execute(self, sql: str, *args: Any) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(sql, *args)
        finally:
            await conn.close()

    async def seed(self, table: str, rows: list[dict[str, Any]]) -> tuple[Endpoint, SourceSpec]:
        await self._execute(ddl(table, self.fields))
        conn = await asyncpg.connect(self.dsn)
        try:
            records = [tuple(json.dumps(r[f.name]) if f.kind == "json" and r[f.name] is not None else r[f.name]
                             for f in self.fields) for r in rows]
            await conn.copy_records_to_table(table, records=records, columns=[f.name for f in self.fields])
        finally:
            await conn.close()
        return self.endpoint, SourceSpec(table=table)

    async def missing(self) -> tuple[Endpoint, SourceSpec]:
        return self.endpoint, SourceSpec(table=f"missing_{uuid.uuid4().hex[:8]}")

    def unreachable(self, port: int) -> Endpoint:
        return Endpoint(type="postgresql", url=f"postgresql://u:pw@127.0.0.1:{port}/db")

    async def create(self, table: str) -> Endpoint:
        await self._execute(ddl(table, self.fields))
        return self.endpoint

    async def read(self, endpoint: Endpoint, table: str) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(endpoint.url)
        try:
            return [dict(r) for r in await conn.fetch(f'SELECT * FROM "{table}"')]
        finally:
            await conn.close()


SOURCE_CASES = [PostgresCase]
TARGET_CASES = [PostgresCase]

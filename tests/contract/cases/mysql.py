"""MySQL/MariaDB as a contract case, on the machine's MariaDB (database `test`): every field of the
dataset in its MySQL type (DECIMAL(14,2), DATETIME(6) in UTC, JSON, LONGTEXT, LONGBLOB, utf8mb4)."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncmy

from schemas.api import SourceSpec
from service.connectors.mysql import KIND
from service.sync.model import Endpoint
from tests.contract.harness import FIELDS, Context, Field

COLUMN_TYPES = {"int": "BIGINT", "string": "LONGTEXT", "decimal": "DECIMAL(14,2)", "float": "DOUBLE",
                "bool": "BOOLEAN", "date": "DATE", "datetime": "DATETIME(6)", "json": "JSON", "binary": "LONGBLOB"}


def ddl(table: str, fields: list[Field]) -> str:
    columns = ", ".join(f"`{f.name}` {COLUMN_TYPES[f.kind]}" + (" PRIMARY KEY" if f.name == "id" else "")
                        for f in fields)
    return f"CREATE TABLE `{table}` ({columns}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"


def stored(kind: str, value: Any) -> Any:
    """A dataset value as MySQL stores it: DATETIME in UTC without a zone, JSON as text."""
    if value is None:
        return None
    if kind == "datetime" and isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    if kind == "json":
        return json.dumps(value, ensure_ascii=False)
    return value


async def mysql_connect(url: str) -> asyncmy.Connection:
    rest = url.split("://", 1)[1]
    auth, _, hostpart = rest.rpartition("@")
    user, _, password = auth.partition(":")
    host, _, db = hostpart.partition("/")
    hostname, _, port = host.partition(":")
    conn = await asyncmy.connect(host=hostname, port=int(port or 3306), user=user or "root", password=password,
                                 database=db, charset="utf8mb4", autocommit=True, binary_prefix=True)
    async with conn.cursor() as cur:
        await cur.execute("SET time_zone = '+00:00'")
    return conn


async def mysql_execute(url: str, sql: str, rows: list[tuple] | None = None) -> None:
    conn = await mysql_connect(url)
    try:
        async with conn.cursor() as cur:
            if rows is None:
                await cur.execute(sql)
            elif rows:
                await cur.executemany(sql, rows)
    finally:
        conn.close()


async def mysql_fetch(url: str, sql: str) -> list[dict[str, Any]]:
    conn = await mysql_connect(url)
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
    finally:
        conn.close()


class MySQLCase:
    name = "mysql"
    fields = FIELDS
    modes = KIND.modes

    def __init__(self, ctx: Context) -> None:
        self.url = ctx.mysql_url

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(type="mysql", url=self.url)

    async def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        names = ", ".join(f"`{f.name}`" for f in self.fields)
        values = ", ".join(["%s"] * len(self.fields))
        await mysql_execute(self.url, f"INSERT INTO `{table}` ({names}) VALUES ({values})",
                            [tuple(stored(f.kind, r[f.name]) for f in self.fields) for r in rows])

    async def seed(self, table: str, rows: list[dict[str, Any]]) -> tuple[Endpoint, SourceSpec]:
        await mysql_execute(self.url, ddl(table, self.fields))
        await self.insert(table, rows)
        return self.endpoint, SourceSpec(table=table)

    async def missing(self) -> tuple[Endpoint, SourceSpec]:
        return self.endpoint, SourceSpec(table=f"missing_{uuid.uuid4().hex[:8]}")

    def unreachable(self, port: int) -> Endpoint:
        return Endpoint(type="mysql", url=f"mysql://u:pw@127.0.0.1:{port}/db")

    async def create(self, table: str) -> Endpoint:
        await mysql_execute(self.url, ddl(table, self.fields))
        return self.endpoint

    async def read(self, endpoint: Endpoint, table: str) -> list[dict[str, Any]]:
        return await mysql_fetch(endpoint.url or self.url, f"SELECT * FROM `{table}`")


SOURCE_CASES = [MySQLCase]
TARGET_CASES = [MySQLCase]

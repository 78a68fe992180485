"""SQLite source: one SELECT per attempt on a read-only connection, cut into chunks.

Same shape as the MySQL source: a table with a single-column primary key is read in key order and
resumed after the last key written; a query (or a key-less table) is resumed by skipping the rows
already written. Values are decoded from SQLite's storage by the columns' declared kinds.
"""

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

import aiosqlite

from schemas.api import SourceSpec
from service.connectors.base import Capabilities, Chunk, Column, Position, SelectItem
from service.connectors.sqlite import boundary, close, connect, table_columns
from service.sync import incremental
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint
from service.sync.transforms import quote_ident
from service.sync.types import kind_of_sqlite, row_converter

log = logging.getLogger(__name__)

CANONICAL = frozenset({"int", "float", "string", "binary"})
"""Kinds whose sqlite3 value is already the canonical Python value; the rest are decoded from text/ints."""
KEY_SLOT = "\x00key"
"""The name of the key column read in front of the row for the resume position (never a real column)."""


def json_value(native: Any) -> Any:
    """A key or cursor value as JSON: integers stay numbers, everything else travels as its text."""
    if isinstance(native, int) and not isinstance(native, bool):
        return native
    return native if isinstance(native, str) else str(native)


class SQLiteSource:
    capabilities = Capabilities(cursor=True)

    def __init__(self, endpoint: Endpoint, spec: SourceSpec, connect_timeout: float) -> None:
        self._endpoint, self._spec, self._timeout = endpoint, spec, connect_timeout
        self._conn: aiosqlite.Connection | None = None
        self._columns: list[Column] = []
        self._key: str | None = None

    async def __aenter__(self) -> Self:
        self._conn = await connect(self._endpoint, "source", self._timeout)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await close(self._conn)

    @property
    def conn(self) -> aiosqlite.Connection:
        assert self._conn is not None, "source used outside its context"
        return self._conn

    @property
    def _relation(self) -> str:
        if self._spec.table is not None:
            return quote_ident(self._spec.table)
        return f"({(self._spec.query or '').strip().rstrip(';')}) AS q"

    async def describe(self) -> list[Column]:
        if self._spec.table is not None:
            self._columns, keys = await table_columns(self.conn, self._spec.table, "source")
            self._key = keys[0] if len(keys) == 1 else None
        else:
            with boundary("source"):
                cursor = await self.conn.execute(f"SELECT * FROM {self._relation} LIMIT 0")
                names = [d[0] for d in cursor.description or ()]
                await cursor.close()
            self._columns = [Column(name, "") for name in names]
        cursor_column = self._spec.cursor_column
        if cursor_column is not None and cursor_column not in {c.name for c in self._columns}:
            raise ConfigInvalid(f"源表缺少游标列：{cursor_column}")
        return self._columns

    def _binders(self, args: list[Any]) -> tuple[incremental.Param, incremental.Member | None]:
        def param(value: Any) -> str:
            args.append(value)
            return "?"

        if self._key is None:
            return param, None
        key = quote_ident(self._key)

        def member(values: Sequence[Any]) -> str:
            args.extend(values)
            return f"{key} IN ({', '.join(['?'] * len(values))})"

        return param, member

    def _window(self, position: Position, args: list[Any]) -> list[str]:
        cursor = self._spec.cursor_column
        if cursor is None:
            return []
        return incremental.window_terms(position, quote_ident(cursor), *self._binders(args))

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with boundary("source"):
            return list(await self.conn.execute_fetchall(sql, args))

    async def start(self, high_water_mark: Any | None) -> Position:
        position: Position = {"after": None, "offset": 0}
        cursor = self._spec.cursor_column
        if cursor is None:
            return position
        position |= incremental.lower_position(high_water_mark, keyed=self._key is not None)
        args: list[Any] = []
        where = " AND ".join(incremental.lower_terms(position, quote_ident(cursor), *self._binders(args)))
        col = quote_ident(cursor)
        rows = await self._fetch(f"SELECT max({col}) FROM {self._relation} WHERE {where}", args)
        if not rows or rows[0][0] is None:
            return incremental.bound(position, None, None)
        upper = json_value(rows[0][0])
        keys = None
        if self._key is not None:
            found = await self._fetch(f"SELECT {quote_ident(self._key)} FROM {self._relation} WHERE {where} "
                                      f"AND {col} = ? LIMIT {incremental.SEEN_LIMIT + 1}", [*args, upper])
            keys = [json_value(r[0]) for r in found]
        return incremental.bound(position, upper, keys)

    async def estimate(self, position: Position) -> int | None:
        if self._spec.table is None:
            return None
        args: list[Any] = []
        terms = self._window(position, args)
        where = f"WHERE {' AND '.join(terms)}" if terms else ""
        return int((await self._fetch(f"SELECT count(*) FROM {self._relation} {where}", args))[0][0])

    def high_water_mark(self, position: Position, previous: Any | None) -> Any | None:
        if self._spec.cursor_column is None:
            return None
        return incremental.next_mark(position, previous)

    async def chunks(
        self, plan: list[SelectItem], target_types: dict[str, str], position: Position, *, size: int, raw: bool
    ) -> AsyncIterator[Chunk]:
        target_kinds = {name: kind_of_sqlite(native) for name, native in target_types.items()}
        keyed = self._key is not None
        read = [Column(KEY_SLOT, "", None), *self._columns] if keyed else self._columns
        convert = row_converter(read, plan, target_kinds, CANONICAL)
        names = [item.target for item in plan]
        select = ", ".join(quote_ident(c.name) for c in self._columns)
        args: list[Any] = []
        terms = self._window(position, args)
        order = ""
        if keyed:
            key = quote_ident(self._key or "")
            if position.get("after") is not None:
                args.append(position["after"])
                terms.append(f"{key} > ?")
            select, order = f"{key}, {select}", f"ORDER BY {key}"
        where = f"WHERE {' AND '.join(terms)}" if terms else ""
        offset = 0 if keyed else int(position.get("offset") or 0)
        limit = f"LIMIT -1 OFFSET {offset}" if offset else ""
        with boundary("source"):
            cursor = await self.conn.execute(f"SELECT {select} FROM {self._relation} {where} {order} {limit}", args)
        try:
            while True:
                with boundary("source"):
                    rows = list(await cursor.fetchmany(size))
                if not rows:
                    break
                if keyed:
                    position = position | {"after": json_value(rows[-1][0])}
                else:
                    position = position | {"offset": int(position.get("offset") or 0) + len(rows)}
                count = len(rows)
                out = [tuple(row) for row in rows] if convert is None else [convert(row) for row in rows]
                del rows
                yield Chunk(number=0, position=position, columns=names, rows=out)
                if count < size:
                    break
        finally:
            await cursor.close()

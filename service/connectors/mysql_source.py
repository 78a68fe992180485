"""MySQL/MariaDB source: one unbuffered (server-side streaming) SELECT per attempt, cut into chunks.

A table with a single-column primary key is read in key order, each chunk's position being its last
key, so a resumed run restarts with `key > last`. A query (or a key-less table) is streamed as is and
resumed by skipping the rows already written. The session is READ ONLY, so every statement runs in a
read-only transaction. Values are decoded in Python (the mapping plan and the target's kinds).
"""

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

import asyncmy
from asyncmy.cursors import SSCursor

from schemas.api import SourceSpec
from service.connectors.base import Capabilities, Chunk, Column, Position, SelectItem
from service.connectors.mysql import boundary, close, connect, fetch, quote_ident, table_columns
from service.sync import incremental
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint
from service.sync.types import kind_of_mysql, row_converter

log = logging.getLogger(__name__)

EXACT_COUNT_BELOW = 100_000
BINARY_CHARSET = 63
KEY_SLOT = "\x00key"
"""The name of the key column read in front of the row for the resume position (never a real column)."""
CANONICAL = frozenset({"int", "float", "decimal", "string", "date", "binary", "json"})
"""Kinds whose asyncmy value is already the canonical Python value (DATETIME is naive, BOOL an int)."""

_FIELD_TYPES = {
    0: "decimal", 1: "tinyint", 2: "smallint", 3: "int", 4: "float", 5: "double", 7: "timestamp", 8: "bigint",
    9: "mediumint", 10: "date", 11: "time", 12: "datetime", 13: "year", 15: "varchar", 16: "bit", 245: "json",
    246: "decimal", 249: "tinyblob", 250: "mediumblob", 251: "longblob", 252: "blob", 253: "varchar",
    254: "char",
}
"""MySQL wire type codes of a query's result columns (BLOB codes also carry TEXT; see `_query_type`)."""


def _query_type(type_code: int, charset_binary: bool) -> str:
    name = _FIELD_TYPES.get(type_code, "varchar")
    if name.endswith("blob") and not charset_binary:
        return name.replace("blob", "text")
    return name


def json_value(native: Any) -> Any:
    """A key or cursor value as JSON: integers stay numbers, everything else travels as its text."""
    if isinstance(native, int) and not isinstance(native, bool):
        return native
    if isinstance(native, bytes):
        return native.decode()
    return str(native)


class MySQLSource:
    capabilities = Capabilities(cursor=True)

    def __init__(self, endpoint: Endpoint, spec: SourceSpec, connect_timeout: float) -> None:
        self._endpoint, self._spec, self._timeout = endpoint, spec, connect_timeout
        self._conn: asyncmy.Connection | None = None
        self._columns: list[Column] = []
        self._key: str | None = None

    async def __aenter__(self) -> Self:
        self._conn = await connect(self._endpoint, "source", self._timeout)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await close(self._conn, clean=exc_type is None)

    @property
    def conn(self) -> asyncmy.Connection:
        assert self._conn is not None, "source used outside its context"
        return self._conn

    @property
    def _relation(self) -> str:
        if self._spec.table is not None:
            return quote_ident(self._spec.table)
        query = (self._spec.query or "").strip().rstrip(";").replace("%", "%%")
        return f"({query}) AS q"

    async def describe(self) -> list[Column]:
        if self._spec.table is not None:
            self._columns, keys = await table_columns(self.conn, self._spec.table, "source")
            self._key = keys[0] if len(keys) == 1 else None
        else:
            with boundary("source", "query"):
                async with self.conn.cursor() as cur:
                    await cur.execute(f"SELECT * FROM {self._relation} LIMIT 0", ())
                    fields = getattr(getattr(cur, "_result", None), "fields", None) or []
            types = [_query_type(f.type_code, f.charsetnr == BINARY_CHARSET) for f in fields]
            self._columns = [Column(f.name, t, kind_of_mysql(t)) for f, t in zip(fields, types, strict=True)]
        cursor = self._spec.cursor_column
        if cursor is not None and cursor not in {c.name for c in self._columns}:
            raise ConfigInvalid(f"源表缺少游标列：{cursor}")
        return self._columns

    def _binders(self, args: list[Any]) -> tuple[incremental.Param, incremental.Member | None]:
        def param(value: Any) -> str:
            args.append(value)
            return "%s"

        if self._key is None:
            return param, None
        key = quote_ident(self._key)

        def member(values: Sequence[Any]) -> str:
            args.extend(values)
            return f"{key} IN ({', '.join(['%s'] * len(values))})"

        return param, member

    def _window(self, position: Position, args: list[Any]) -> list[str]:
        cursor = self._spec.cursor_column
        if cursor is None:
            return []
        return incremental.window_terms(position, quote_ident(cursor), *self._binders(args))

    async def start(self, high_water_mark: Any | None) -> Position:
        position: Position = {"after": None, "offset": 0}
        cursor = self._spec.cursor_column
        if cursor is None:
            return position
        position |= incremental.lower_position(high_water_mark, keyed=self._key is not None)
        args: list[Any] = []
        where = " AND ".join(incremental.lower_terms(position, quote_ident(cursor), *self._binders(args)))
        col = quote_ident(cursor)
        with boundary("source", self._spec.table):
            rows = await fetch(self.conn, f"SELECT CAST(max({col}) AS CHAR), max({col}) FROM {self._relation} "
                                          f"WHERE {where}", args)
            text, native = rows[0] if rows else (None, None)
            if text is None:
                return incremental.bound(position, None, None)
            upper = json_value(native) if isinstance(native, int) else json_value(text)
            keys = None
            if self._key is not None:
                key = quote_ident(self._key)
                found = await fetch(self.conn, f"SELECT {key} FROM {self._relation} WHERE {where} AND {col} = %s "
                                               f"LIMIT {incremental.SEEN_LIMIT + 1}", [*args, upper])
                keys = [json_value(r[0]) for r in found]
        return incremental.bound(position, upper, keys)

    async def estimate(self, position: Position) -> int | None:
        if self._spec.table is None:
            return None
        schema, _, name = self._spec.table.rpartition(".")
        with boundary("source", self._spec.table):
            rows = await fetch(self.conn, "SELECT TABLE_ROWS FROM information_schema.TABLES "
                                          "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
                               (schema or None, name))
            approx = rows[0][0] if rows else None
            if approx is not None and approx >= EXACT_COUNT_BELOW:
                return int(approx)
            args: list[Any] = []
            terms = self._window(position, args)
            where = f"WHERE {' AND '.join(terms)}" if terms else ""
            return int((await fetch(self.conn, f"SELECT count(*) FROM {self._relation} {where}", args))[0][0])

    def high_water_mark(self, position: Position, previous: Any | None) -> Any | None:
        if self._spec.cursor_column is None:
            return None
        return incremental.next_mark(position, previous)

    async def chunks(
        self, plan: list[SelectItem], target_types: dict[str, str], position: Position, *, size: int, raw: bool
    ) -> AsyncIterator[Chunk]:
        target_kinds = {name: kind_of_mysql(native) for name, native in target_types.items()}
        keyed = self._key is not None
        read = [Column(KEY_SLOT, "", None), *self._columns] if keyed else self._columns
        convert = row_converter(read, plan, target_kinds, CANONICAL)
        names = [item.target for item in plan]
        select = ", ".join(quote_ident(c.name) for c in self._columns)
        reader = self._keyset(select, position, size) if keyed else self._stream(select, position, size)
        async for rows, position in reader:
            out = [tuple(row) for row in rows] if convert is None else [convert(row) for row in rows]
            del rows
            yield Chunk(number=0, position=position, columns=names, rows=out)

    async def _keyset(
        self, select: str, position: Position, size: int
    ) -> AsyncIterator[tuple[Sequence[Sequence[Any]], Position]]:
        """Pages of `size` rows in key order, one buffered query each: memory is bounded by the chunk."""
        key = quote_ident(self._key or "")
        while True:
            args: list[Any] = []
            terms = self._window(position, args)
            if position.get("after") is not None:
                args.append(position["after"])
                terms.append(f"{key} > %s")
            where = f"WHERE {' AND '.join(terms)}" if terms else ""
            with boundary("source", self._spec.table):
                rows = await fetch(self.conn, f"SELECT {key}, {select} FROM {self._relation} {where} "
                                              f"ORDER BY {key} LIMIT {int(size)}", args)
            if not rows:
                return
            position = position | {"after": json_value(rows[-1][0])}
            count = len(rows)
            yield rows, position
            if count < size:
                return

    async def _stream(
        self, select: str, position: Position, size: int
    ) -> AsyncIterator[tuple[Sequence[Sequence[Any]], Position]]:
        """One unbuffered SELECT (server-side streaming), resumed by skipping the rows already written.

        asyncmy reads the socket into an unbounded buffer, so the socket is paused between fetches:
        the server then waits on TCP back-pressure and memory stays at about one chunk.
        """
        args: list[Any] = []
        terms = self._window(position, args)
        where = f"WHERE {' AND '.join(terms)}" if terms else ""
        skip = int(position.get("offset") or 0)
        label = self._spec.table or "query"
        transport = getattr(self.conn, "_transport", None)
        with boundary("source", label):
            cur = self.conn.cursor(SSCursor)
            await cur.execute(f"SELECT {select} FROM {self._relation} {where}", args)
        exhausted = False
        try:
            while True:
                if transport is not None:
                    transport.resume_reading()
                with boundary("source", label):
                    rows = await cur.fetchmany(min(skip, size) if skip else size)
                if transport is not None:
                    transport.pause_reading()
                if not rows:
                    exhausted = True
                    return
                if skip:
                    skip -= len(rows)
                    continue
                position = position | {"offset": int(position.get("offset") or 0) + len(rows)}
                count = len(rows)
                yield rows, position
                if count < size:
                    exhausted = True
                    return
        finally:
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
            if not exhausted and self._conn is not None:
                log.debug("source stream left unread; closing its connection")
                self._conn.close()
                self._conn = None

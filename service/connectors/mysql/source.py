"""MySQL/MariaDB source: one unbuffered (server-side streaming) SELECT per attempt, cut into chunks.

A table with a single-column primary key is read in key order, each chunk's position being its last
key, so a resumed run restarts with `key > last`. A query (or a key-less table) is streamed as is and
resumed by skipping the rows already written. Every run reads on a new connection inside one READ ONLY
transaction that is never committed (`mysql.connect`), after `query_guard` passed its query's text
(no `INTO OUTFILE`, `SET`, `:=` or second statement). Values are decoded in Python (the mapping plan
and the target's kinds); what all SQL sources share is `sql_source.SQLSource`, slices included (a sliced run's
range is a term of every page's WHERE; the planner's estimates are `EXPLAIN`'s rows).
"""

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar, Self

from asyncmy.cursors import SSCursor

from service.connectors.base import Capabilities, Column, Position
from service.connectors.mysql.connection import boundary, close, connect, fetch, quote_ident, table_columns
from service.connectors.mysql.types import TYPES, kind_of
from service.connectors.sql.query_guard import Dialect
from service.connectors.sql.source import Page, SQLSource, where_clause

log = logging.getLogger(__name__)

BINARY_CHARSET = 63
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


class MySQLSource(SQLSource):
    capabilities = Capabilities(cursor=True, types=TYPES)
    placeholder = "%s"
    canonical = frozenset({"int", "float", "decimal", "string", "date", "binary", "json"})
    """Kinds whose asyncmy value is already the canonical Python value (DATETIME is naive, BOOL an int)."""
    quote = staticmethod(quote_ident)
    query_dialect: ClassVar[Dialect | None] = "mysql"

    async def __aenter__(self) -> Self:
        self._check_query()
        self._conn = await connect(self._endpoint, "source", self._timeout)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await close(self._conn, clean=exc_type is None)

    def _query_text(self) -> str:
        return super()._query_text().replace("%", "%%")

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
            self._columns = [Column(f.name, t, kind_of(t)) for f, t in zip(fields, types, strict=True)]
        self._check_cursor([c.name for c in self._columns])
        return self._columns

    async def _fetch(self, sql: str, args: list[Any]) -> Sequence[Sequence[Any]]:
        with boundary("source", self._spec.table):
            return await fetch(self.conn, sql, args)

    def _json_of(self, row: Sequence[Any]) -> Any:
        return json_value(row[0])

    async def _cursor_max(self, column: str, where: str, args: list[Any]) -> Any | None:
        """Integers as numbers, everything else as the server spells it (`CAST … AS CHAR`)."""
        rows = await self._fetch(f"SELECT CAST(max({column}) AS CHAR), max({column}) FROM {self._relation} "
                                 f"WHERE {where}", args)
        text, native = rows[0] if rows else (None, None)
        if text is None:
            return None
        return json_value(native) if isinstance(native, int) else json_value(text)

    async def _approximate_rows(self) -> int | None:
        schema, _, name = (self._spec.table or "").rpartition(".")
        rows = await self._fetch("SELECT TABLE_ROWS FROM information_schema.TABLES "
                                 "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
                                 [schema or None, name])
        return rows[0][0] if rows else None

    async def _estimate_where(self, where: str, args: list[Any]) -> int | None:
        """The optimizer's row estimate (`EXPLAIN`'s `rows`, times `filtered` where the server reports it)."""
        with boundary("source", self._spec.table):
            async with self.conn.cursor() as cur:
                await cur.execute(f"EXPLAIN SELECT 1 FROM {self._relation} {where}", args)
                names = [d[0].lower() for d in cur.description or ()]
                plan = list(await cur.fetchall())
        if not plan or "rows" not in names:
            return None
        first = dict(zip(names, plan[0], strict=True))
        rows = float(first["rows"] or 0)
        filtered = first.get("filtered")
        return int(rows * float(filtered) / 100) if filtered is not None else int(rows)

    def _pages(self, select: str, position: Position, size: int) -> AsyncIterator[Page]:
        if self._key is not None:
            return self._keyset(select, position, size)
        return self._stream(select, position, size)

    async def _keyset(self, select: str, position: Position, size: int) -> AsyncIterator[Page]:
        """Pages of `size` rows in key order, one buffered query each: memory is bounded by the chunk."""
        key = quote_ident(self._key or "")
        while True:
            args: list[Any] = []
            terms = self._window(position, args)
            if position.get("after") is not None:
                args.append(position["after"])
                terms.append(f"{key} > %s")
            rows = list(await self._fetch(f"SELECT {key}, {select} FROM {self._relation} {where_clause(terms)} "
                                          f"ORDER BY {key} LIMIT {int(size)}", args))
            if not rows:
                return
            position = self._advance(position, rows)
            count = len(rows)
            yield rows, position
            if count < size:
                return

    async def _stream(self, select: str, position: Position, size: int) -> AsyncIterator[Page]:
        """One unbuffered SELECT (server-side streaming), resumed by skipping the rows already written.

        asyncmy reads the socket into an unbounded buffer, so the socket is paused between fetches:
        the server then waits on TCP back-pressure and memory stays at about one chunk.
        """
        args: list[Any] = []
        where = where_clause(self._window(position, args))
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
                    rows = list(await cur.fetchmany(min(skip, size) if skip else size))
                if transport is not None:
                    transport.pause_reading()
                if not rows:
                    exhausted = True
                    return
                if skip:
                    skip -= len(rows)
                    continue
                position = self._advance(position, rows)
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

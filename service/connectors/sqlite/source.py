"""SQLite source: one SELECT per attempt on a read-only connection (`mode=ro` and a read-only
authorizer, `sqlite/connection.py`), cut into chunks.

A table with a single-column primary key is read in key order and resumed after the last key written; a
query (or a key-less table) is resumed by skipping the rows already written (`sql_source.SQLSource`).
Values are decoded from SQLite's storage by the columns' declared kinds. A sliced run's range is a term of
the page's WHERE (`sql_source.SQLSource`); SQLite keeps dates and times as text, so a slice's bounds are
bound as text in SQLite's own spelling (`2024-01-31`, `2024-01-31 00:00:00`), which orders like the values
our target writes and SQLite's `datetime()` returns. Counts are always exact.
"""

from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Any, Self

from service.connectors.base import Capabilities, Column, Position
from service.connectors.sql.source import Page, SQLSource, slice_value, where_clause
from service.connectors.sqlite.connection import boundary, close, connect, table_columns
from service.connectors.sqlite.types import TYPES
from service.sync.transforms import quote_ident


def json_value(native: Any) -> Any:
    """A key or cursor value as JSON: integers stay numbers, everything else travels as its text."""
    if isinstance(native, int) and not isinstance(native, bool):
        return native
    return native if isinstance(native, str) else str(native)


class SQLiteSource(SQLSource):
    capabilities = Capabilities(cursor=True, types=TYPES)
    canonical = frozenset({"int", "float", "string", "binary"})
    """Kinds whose sqlite3 value is already the canonical Python value; the rest are decoded from text/ints."""
    quote = staticmethod(quote_ident)

    async def __aenter__(self) -> Self:
        self._conn = await connect(self._endpoint, "source", self._timeout)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await close(self._conn)

    async def describe(self) -> list[Column]:
        if self._spec.table is not None:
            self._columns, keys = await table_columns(self.conn, self._spec.table, "source")
            self._key = keys[0] if len(keys) == 1 else None
        else:
            with boundary("source"):
                # Prepared alone, the query meets the read-only authorizer as written: an ATTACH, a write
                # or a PRAGMA fails here as AccessDenied instead of as a syntax error of the wrapper.
                await self.conn.execute_fetchall(f"EXPLAIN {self._query_text()}")
                cursor = await self.conn.execute(f"SELECT * FROM {self._relation} LIMIT 0")
                names = [d[0] for d in cursor.description or ()]
                await cursor.close()
            self._columns = [Column(name, "") for name in names]
        self._check_cursor([c.name for c in self._columns])
        return self._columns

    def _slice_param(self, kind: str, value: Any, args: list[Any]) -> str:
        """A date or time bound as SQLite's text (`YYYY-MM-DD HH:MM:SS`, space-separated), an integer as is."""
        bound = slice_value(kind, value)
        if isinstance(bound, datetime):
            bound = bound.isoformat(sep=" ")
        elif isinstance(bound, date):
            bound = bound.isoformat()
        args.append(bound)
        return "?"

    async def _fetch(self, sql: str, args: list[Any]) -> Sequence[Sequence[Any]]:
        with boundary("source"):
            return list(await self.conn.execute_fetchall(sql, args))

    def _json_of(self, row: Sequence[Any]) -> Any:
        return json_value(row[0])

    async def _pages(self, select: str, position: Position, size: int) -> AsyncIterator[Page]:
        """One SELECT, fetched `size` rows at a time; a keyed table from its last key, the rest by OFFSET."""
        args: list[Any] = []
        terms = self._window(position, args)
        order = ""
        keyed = self._key is not None
        if keyed:
            key = quote_ident(self._key or "")
            if position.get("after") is not None:
                args.append(position["after"])
                terms.append(f"{key} > ?")
            select, order = f"{key}, {select}", f"ORDER BY {key}"
        offset = 0 if keyed else int(position.get("offset") or 0)
        limit = f"LIMIT -1 OFFSET {offset}" if offset else ""
        with boundary("source"):
            cursor = await self.conn.execute(
                f"SELECT {select} FROM {self._relation} {where_clause(terms)} {order} {limit}", args
            )
        try:
            while True:
                with boundary("source"):
                    rows = list(await cursor.fetchmany(size))
                if not rows:
                    break
                position = self._advance(position, rows)
                count = len(rows)
                yield rows, position
                if count < size:
                    break
        finally:
            await cursor.close()

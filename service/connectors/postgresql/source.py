"""PostgreSQL source: a table read in keyset ranges of its primary key (raw binary COPY or decoded rows),
or a read-only query (or key-less table) read through a server-side cursor.

Every run reads on a connection of its own, opened for it and closed after it, inside one READ ONLY
transaction that is never committed (docs/spec.md §7, "Query sources"): a function that writes fails, and a
setting a query changes (`set_config(…, false)`) dies with the transaction instead of reaching a later
run. A query's text is checked first (`query_guard`), and after each read of it, before its rows are
handed over, the session is checked unchanged (`check_session`), so such a query fails its run. A query
runs in REPEATABLE READ, so the window fixed at the start and the rows read see one snapshot; a table in
READ COMMITTED, so a long keyset read holds no snapshot between chunks.

The mapping runs in SQL here (`select_expressions`), so only the window, the estimate and the resume
positions are shared with the other SQL sources (`sql/source.py`). A sliced run's range is a term of the
window (`_window`), so it reaches the keyset bounds, the raw binary COPY of each chunk and the cursor read
alike; its bounds are bound as the column's own type (asyncpg infers it from the comparison), and the
planner's estimates are `EXPLAIN`'s.
"""

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar, Self

import asyncpg

from schemas.api import SourceSpec
from service.connectors.base import Capabilities, Chunk, Column, Position, SelectItem, TargetTypes
from service.connectors.postgresql.connection import (
    COPY_FORMAT,
    boundary,
    check_session,
    close,
    connect,
    json_value,
    map_error,
    relation_shape,
)
from service.connectors.postgresql.types import TYPES, kind_of
from service.connectors.sql.query_guard import Dialect
from service.connectors.sql.source import EXACT_COUNT_BELOW, SQLSource, slice_value, where_clause
from service.sync import incremental
from service.sync.errors import SyncError
from service.sync.model import Endpoint
from service.sync.transforms import quote_ident, select_expressions

log = logging.getLogger(__name__)

STREAM_DEPTH = 16
"""Socket reads buffered between the source COPY and the target COPY: overlap with flat memory."""


_PLACEHOLDER = re.compile(r"""\"(?:[^"]|"")*"|'(?:[^']|'')*'|\$(\d+)\b""")
"""A `$n` placeholder, or a quoted identifier or literal skipped whole (a column may be named `a$1`)."""


def inline_text_params(sql: str, args: list[str]) -> str:
    """`sql` with each `$n` replaced by its text argument as a quoted literal. COPY takes no parameters, and
    asyncpg inlines them with two round trips of its own (a prepare for their types, then `quote_literal`
    on the server); the keyset bounds are always text cast in SQL (`CAST($n::text AS …)`), so quoting them
    here is exact: with `standard_conforming_strings` on (set at connect), a literal is its text with each
    quote doubled."""

    def literal(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return match.group(0)
        return "'" + args[int(match.group(1)) - 1].replace("'", "''") + "'"

    return _PLACEHOLDER.sub(literal, sql)


class _CopyStream:
    """Bytes of one `COPY … TO STDOUT (FORMAT binary)` handed over through a bounded queue."""

    def __init__(self, conn: asyncpg.Connection, sql: str, args: list[Any]) -> None:
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(STREAM_DEPTH)
        self.task = asyncio.create_task(self._run(conn, sql, args))

    async def _run(self, conn: asyncpg.Connection, sql: str, args: list[Any]) -> None:
        try:
            if args and all(isinstance(arg, str) and "\x00" not in arg for arg in args):
                sql, args = inline_text_params(sql, args), []
            await conn.copy_from_query(sql, *args, output=self._queue.put, format="binary")
        except Exception as exc:
            await self._queue.put(map_error(exc, "source"))
            raise
        await self._queue.put(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (item := await self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item


class PostgresSource(SQLSource):
    capabilities = Capabilities(copy_format=COPY_FORMAT, cursor=True, types=TYPES)
    quote = staticmethod(quote_ident)
    query_dialect: ClassVar[Dialect | None] = "postgresql"

    def __init__(self, endpoint: Endpoint, spec: SourceSpec, connect_timeout: float) -> None:
        super().__init__(endpoint, spec, connect_timeout)
        self._types: dict[str, str] = {}
        self._key_type = ""
        self._stream: _CopyStream | None = None

    async def __aenter__(self) -> Self:
        self._check_query()
        table = self._spec.table is not None
        self._conn = await connect(self._endpoint, "source", self._timeout, reusable=table)
        isolation = "read_committed" if table else "repeatable_read"
        try:
            with boundary("source"):
                self._transaction = self._conn.transaction(isolation=isolation, readonly=True)
                await self._transaction.start()
        except BaseException:
            await close(self._conn, clean=False)
            raise
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        if self._stream is not None and not self._stream.task.done():
            self._stream.task.cancel()
        clean = exc_type is None
        if clean and self._spec.table is not None and self._conn is not None and not self._conn.is_closed():
            try:  # a table source's read-only transaction ends here, so its connection can be parked
                await self._transaction.rollback()
            except Exception:
                clean = False
        await close(self._conn, clean=clean)

    async def describe(self) -> list[Column]:
        if self._spec.table is not None:
            columns, key = await relation_shape(self.conn, self._spec.table, "source")
            self._key, self._key_type = (key.name, key.sql_type) if key is not None else (None, "")
        else:
            with boundary("source"):
                stmt = await self.conn.prepare(f"SELECT * FROM {self._relation}")
                attrs = stmt.get_attributes()
                types = await self.conn.fetch(
                    "SELECT format_type(t, NULL) AS sql_type FROM unnest($1::oid[]) WITH ORDINALITY AS u(t, n)"
                    " ORDER BY n",
                    [a.type.oid for a in attrs],
                )
            columns = [
                Column(a.name, t["sql_type"], kind_of(t["sql_type"]))
                for a, t in zip(attrs, types, strict=True)
            ]
        self._columns = columns
        self._types = {c.name: c.sql_type for c in columns}
        self._check_cursor(list(self._types))
        return columns

    def _binders(self, args: list[Any]) -> tuple[incremental.Param, incremental.Member | None]:
        """Bind cursor values and key lists as text parameters cast back to the columns' types."""
        ctype = self._types[self._spec.cursor_column or ""]

        def param(value: Any) -> str:
            args.append(str(value))
            return f"CAST(${len(args)}::text AS {ctype})"

        if self._key is None:
            return param, None
        key, ktype = quote_ident(self._key), self._key_type

        def member(values: Sequence[Any]) -> str:
            args.append([str(v) for v in values])
            return f"{key} = ANY(CAST(${len(args)}::text[] AS {ktype}[]))"

        return param, member

    async def _fetch(self, sql: str, args: list[Any]) -> Sequence[Sequence[Any]]:
        with boundary("source"):
            rows: list[asyncpg.Record] = await self.conn.fetch(sql, *args)
        return rows

    def _json_select(self, expr: str) -> str:
        """The value and its text: integers travel as numbers, everything else as PostgreSQL spells it."""
        return f"{expr}, {expr}::text"

    def _json_of(self, row: Sequence[Any]) -> Any:
        return json_value(row[0], row[1])

    async def estimate(self, position: Position) -> int | None:
        """As every SQL source's (the statistics, or an exact count of a small table), in one statement when
        the run is not a slice: a round trip is worth more than the small count it saves."""
        if self._spec.table is None or self._slice is not None:
            return await super().estimate(position)
        args: list[Any] = []
        where = where_clause(self._window(position, args))
        args.append(quote_ident(self._spec.table))
        statistics = f"SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(${len(args)})"
        rows = await self._fetch(
            f"SELECT CASE WHEN r.n >= {EXACT_COUNT_BELOW} THEN r.n ELSE (SELECT count(*) FROM {self._relation} {where})"
            f" END FROM (SELECT coalesce(({statistics}), -1) AS n) AS r", args)
        return int(rows[0][0])

    async def _approximate_rows(self) -> int | None:
        rows = await self._fetch("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)",
                                 [quote_ident(self._spec.table or "")])
        return rows[0][0] if rows else None

    def _slice_param(self, kind: str, value: Any, args: list[Any]) -> str:
        args.append(slice_value(kind, value))
        return f"${len(args)}"

    async def _estimate_where(self, where: str, args: list[Any]) -> int | None:
        """The planner's row estimate of the table's rows in `where` (`EXPLAIN`, from the column statistics)."""
        plan = await self._fetch(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {self._relation} {where}", args)
        found = json.loads(plan[0][0]) if isinstance(plan[0][0], str) else plan[0][0]
        return int(found[0]["Plan"]["Plan Rows"])

    async def chunks(
        self, plan: list[SelectItem], target_types: TargetTypes, position: Position, *, size: int, raw: bool
    ) -> AsyncIterator[Chunk]:
        select = ", ".join(select_expressions(plan, self._types, target_types.spelled))
        columns = [item.target for item in plan]
        if self._key is not None:
            reader = self._keyset(select, columns, position, size, raw=raw)
        else:
            reader = self._cursor_rows(select, columns, position, size)
        async for chunk in reader:
            yield chunk

    def _after(self, position: Position, args: list[Any]) -> list[str]:
        """The window's terms and, once a chunk is written, `key > after` (the key bound as text)."""
        assert self._key is not None
        terms = self._window(position, args)
        if position["after"] is not None:
            args.append(position["after"])
            terms.append(f"{quote_ident(self._key)} > CAST(${len(args)}::text AS {self._key_type})")
        return terms

    async def _next_upper(self, position: Position, size: int) -> tuple[str, bool] | None:
        """The chunk's last key and whether it is the last key of all: the size-th key after `after`, or the
        largest when fewer remain (then no later chunk). One statement (a round trip is ~0.5 ms here, more
        than a small chunk's rows); None when no key is left."""
        key = quote_ident(self._key or "")
        args: list[Any] = []
        where = where_clause(self._after(position, args))
        with boundary("source"):
            row = await self.conn.fetchrow(
                f"SELECT coalesce(n.k, (SELECT max({key})::text FROM {self._relation} {where})) AS upper,"
                f" n.k IS NULL AS last"
                f" FROM (SELECT ({key})::text AS k FROM {self._relation} {where}"
                f" ORDER BY {key} OFFSET {size - 1} LIMIT 1) AS n RIGHT JOIN (VALUES (1)) AS one ON true",
                *args,
            )
        if row is None or row["upper"] is None:
            return None
        return row["upper"], row["last"]

    def _range(self, position: Position, upper: str, args: list[Any]) -> str:
        terms = self._after(position, args)
        args.append(upper)
        terms.append(f"{quote_ident(self._key or '')} <= CAST(${len(args)}::text AS {self._key_type})")
        return " AND ".join(terms)

    async def _keyset(
        self, select: str, columns: list[str], position: Position, size: int, *, raw: bool
    ) -> AsyncIterator[Chunk]:
        """One key range per chunk, read as a binary COPY stream (`raw`) or as decoded rows."""
        last = False
        while not last and (bound := await self._next_upper(position, size)) is not None:
            upper, last = bound
            args: list[Any] = []
            sql = f"SELECT {select} FROM {self._relation} WHERE {self._range(position, upper, args)}"
            log.debug("source chunk after %s up to %s", position["after"], upper)
            position = position | {"after": upper}
            if not raw:
                with boundary("source"):
                    rows = await self.conn.fetch(sql, *args)
                yield Chunk(number=0, position=position, columns=columns, rows=[tuple(r) for r in rows])
                continue
            self._stream = _CopyStream(self.conn, sql, args)
            yield Chunk(number=0, position=position, columns=columns, stream=aiter(self._stream))
            try:
                await self._stream.task
            except SyncError:
                raise
            except Exception as exc:
                raise map_error(exc, "source") from exc

    async def _cursor_rows(
        self, select: str, columns: list[str], position: Position, size: int
    ) -> AsyncIterator[Chunk]:
        args: list[Any] = []
        terms = self._window(position, args)
        where = where_clause(terms)
        offset = int(position.get("offset") or 0)
        with boundary("source"):
            cursor = await self.conn.cursor(f"SELECT {select} FROM {self._relation} {where}", *args)
            if offset:
                log.debug("source cursor skips %d rows already written", offset)
                await cursor.forward(offset)
        while True:
            with boundary("source"):
                rows = await cursor.fetch(size)
            await self._check_session()
            if not rows:
                break
            offset += len(rows)
            position = position | {"offset": offset}
            yield Chunk(number=0, position=position, columns=columns, rows=[tuple(r) for r in rows])
            if len(rows) < size:
                break

    async def _check_session(self) -> None:
        """After every read of a query, before its rows are handed over: the session is unchanged. A table
        source runs no SQL of the operator's, so it skips the check (~0.8 ms); its transaction still holds."""
        if self._spec.query is not None:
            await check_session(self.conn)


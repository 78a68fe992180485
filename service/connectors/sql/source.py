"""What every SQL source does the same way, whatever the dialect: read a table (or a read-only query),
fix the incremental window at the run's start, estimate the rows in it, and cut decoded rows into chunks
that carry their resume position (the last key of a keyed table, the rows read so far otherwise).

A table source is also sliceable (`SliceableSource`, docs/spec.md §10): it tells the planner a column's kind,
bounds and the rows of a range, and once `restrict`ed to a slice's range, that range joins every WHERE it
builds (the window's, the estimate's, the count's, each page's), so the run reads only the slice's rows. The
incremental window stays the table's (fixed by `start` over the whole table): a slice reads its share of it.

A dialect says how it binds parameters, fetches rows, counts approximately and pages through a table;
`postgresql/source.py`, `mysql/source.py` and `sqlite/source.py` are those hooks. See `service.sync.incremental`
for the window's terms.
"""

from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Any, ClassVar

from typing_extensions import override

from schemas.api import SourceSpec
from schemas.messages import SPLIT_NEEDS_TABLE, cursor_column_missing, source_column_missing
from service.connectors.base import Capabilities, Chunk, Column, Position, SelectItem, Source, TargetTypes
from service.connectors.sql.query_guard import Dialect, checked_query
from service.slicing.ranges import SliceRange
from service.sync import incremental
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint
from service.sync.types import row_converter

EXACT_COUNT_BELOW = 100_000
"""Below this many rows (by the catalog's estimate) the estimate is an exact count of the window."""
KEY_SLOT = "\x00key"
"""The name of the key column read in front of the row for the resume position (never a real column)."""

Page = tuple[list[Sequence[Any]], Position]
"""Rows read from the source (a keyed table's key in front) and the position after them."""


def where_clause(terms: Sequence[str]) -> str:
    return f"WHERE {' AND '.join(terms)}" if terms else ""


def slice_value(kind: str, value: Any) -> Any:
    """A slice bound (JSON: an integer, or ISO 8601 text) as the Python value its column compares with."""
    if kind == "date":
        return date.fromisoformat(str(value)[:10])
    if kind == "datetime":
        return datetime.fromisoformat(str(value))
    return int(value)


def bound_json(value: Any) -> Any:
    """A column's smallest or largest value as a slice bound: integers as numbers, dates and times as ISO text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, date):
        return value.isoformat()
    return value.decode() if isinstance(value, bytes) else str(value)


class SQLSource(Source):
    """A source over one SQL connection; subclasses open it and supply the dialect's hooks below."""

    capabilities = Capabilities(cursor=True)
    """Each dialect adds its type map (`<kind>/types.py`)."""
    placeholder = "?"
    """How a parameter is written in this dialect's SQL (`_binders` of the placeholder style)."""
    canonical: frozenset[str] = frozenset()
    """Kinds whose driver value is already the canonical Python value (see `row_converter`)."""
    query_dialect: ClassVar[Dialect | None] = None
    """How `query_guard` reads this dialect's queries; None: the dialect checks its queries itself."""

    def __init__(self, endpoint: Endpoint, spec: SourceSpec, connect_timeout: float) -> None:
        self._endpoint, self._spec, self._timeout = endpoint, spec, connect_timeout
        self._conn: Any = None
        self._columns: list[Column] = []
        self._key: str | None = None
        """The single-column primary key of a table: keyset paging and `after` positions; None otherwise."""
        self._query: str | None = None
        """The query as `query_guard` let it through (see `_check_query`)."""
        self._slice: SliceRange | None = None
        """The range of a sliced run (`restrict`): a term of every WHERE; None reads the whole table."""

    @property
    def conn(self) -> Any:
        assert self._conn is not None, "source used outside its context"
        return self._conn

    # Dialect hooks.

    @staticmethod
    def quote(name: str) -> str:
        raise NotImplementedError

    async def _fetch(self, sql: str, args: list[Any]) -> Sequence[Sequence[Any]]:
        """All rows of one statement, driver errors mapped at the source boundary."""
        raise NotImplementedError

    def _json_select(self, expr: str) -> str:
        """What to select for a key or cursor value that becomes part of a position (see `_json_of`)."""
        return expr

    def _json_of(self, row: Sequence[Any]) -> Any:
        """The JSON value of what `_json_select` read at the front of `row`."""
        raise NotImplementedError

    async def _approximate_rows(self) -> int | None:
        """The catalog's row estimate of the table, when the dialect keeps one."""
        return None

    async def _estimate_where(self, where: str, args: list[Any]) -> int | None:  # noqa: ARG002 (SQLite counts)
        """The planner's estimate of the table's rows matching `where` (a WHERE clause); None: count them."""
        return None

    def _slice_param(self, kind: str, value: Any, args: list[Any]) -> str:
        """Bind one slice bound (JSON) as its column's Python value (`slice_value`)."""
        args.append(slice_value(kind, value))
        return self.placeholder

    def _pages(self, select: str, position: Position, size: int) -> AsyncIterator[Page]:
        """Pages of at most `size` rows after `position`; the last one is short (or empty)."""
        raise NotImplementedError

    # Shared behaviour.

    def _check_query(self) -> None:
        """Refuse a query that writes, changes the session or is more than one statement (QueryRefused),
        before anything connects; run first by the sources of a `query_dialect`."""
        if self._spec.query is not None and self.query_dialect is not None:
            self._query = checked_query(self._spec.query, self.query_dialect)

    def _query_text(self) -> str:
        if self._query is not None:
            return self._query
        return (self._spec.query or "").strip().rstrip(";")

    @property
    def _relation(self) -> str:
        """The table, or the query as a subquery (on lines of its own, so a last `--` comment ends)."""
        if self._spec.table is not None:
            return self.quote(self._spec.table)
        return f"(\n{self._query_text()}\n) AS q"

    async def count_rows(self) -> int | None:
        """The table's rows (in the run's read snapshot; a sliced run's: its range's), for a full run's
        reconciliation; None for a query, whose count would be a second run of it."""
        if self._spec.table is None:
            return None
        args: list[Any] = []
        where = where_clause(self._slice_terms(self._slice, args))
        rows = await self._fetch(f"SELECT COUNT(*) FROM {self.quote(self._spec.table)} {where}", args)
        return int(rows[0][0])

    # Slices (`SliceableSource`).

    def _sliceable(self) -> str:
        """The table a slice is a range of; ConfigInvalid for a query, which has no column to range over."""
        if self._spec.table is None:
            raise ConfigInvalid(SPLIT_NEEDS_TABLE)
        return self.quote(self._spec.table)

    async def column_kind(self, column: str) -> str | None:
        self._sliceable()
        if not self._columns:
            await self.describe()
        found = next((c for c in self._columns if c.name == column), None)
        if found is None:
            raise ConfigInvalid(source_column_missing(column))
        return found.kind

    async def bounds(self, column: str) -> tuple[Any, Any] | None:
        table, name = self._sliceable(), self.quote(column)
        rows = await self._fetch(f"SELECT min({name}), max({name}) FROM {table}", [])
        if not rows or rows[0][0] is None:
            return None
        return bound_json(rows[0][0]), bound_json(rows[0][1])

    async def count_range(self, where: SliceRange, *, exact: bool = True) -> int:
        table = self._sliceable()
        args: list[Any] = []
        clause = where_clause(self._slice_terms(where, args))
        if not exact and (estimated := await self._estimate_where(clause, args)) is not None:
            return estimated
        return int((await self._fetch(f"SELECT count(*) FROM {table} {clause}", args))[0][0])

    def restrict(self, where: SliceRange) -> None:
        self._sliceable()
        self._slice = where

    def _slice_terms(self, where: SliceRange | None, args: list[Any]) -> list[str]:
        """WHERE terms of a slice's range: `lo <= column < hi`, with `OR column IS NULL` for the slice that
        takes the NULLs; bounds bound as parameters (`_slice_param`)."""
        if where is None:
            return []
        column = self.quote(where.column)
        terms = []
        if where.lo is not None:
            terms.append(f"{column} >= {self._slice_param(where.kind, where.lo, args)}")
        if where.hi is not None:
            terms.append(f"{column} < {self._slice_param(where.kind, where.hi, args)}")
        if not where.nulls:
            return terms or [f"{column} IS NOT NULL"]
        return [f"({column} IS NULL OR {' AND '.join(terms)})"] if terms else []

    def _check_cursor(self, columns: Sequence[str]) -> None:
        cursor = self._spec.cursor_column
        if cursor is not None and cursor not in columns:
            raise ConfigInvalid(cursor_column_missing(cursor))

    def _binders(self, args: list[Any]) -> tuple[incremental.Param, incremental.Member | None]:
        """Bind cursor values and key lists as plain parameters (the driver adapts their types)."""
        placeholder = self.placeholder

        def param(value: Any) -> str:
            args.append(value)
            return placeholder

        if self._key is None:
            return param, None
        key = self.quote(self._key)

        def member(values: Sequence[Any]) -> str:
            args.extend(values)
            return f"{key} IN ({', '.join([placeholder] * len(values))})"

        return param, member

    def _window(self, position: Position, args: list[Any]) -> list[str]:
        """WHERE terms of the rows a run reads: the incremental window fixed at its start, and a sliced run's
        range."""
        cursor = self._spec.cursor_column
        terms = [] if cursor is None else incremental.window_terms(position, self.quote(cursor), *self._binders(args))
        return terms + self._slice_terms(self._slice, args)

    async def _cursor_max(self, column: str, where: str, args: list[Any]) -> Any | None:
        """The window's upper bound: the cursor's largest value above the lower bound, as JSON."""
        rows = await self._fetch(f"SELECT {self._json_select(f'max({column})')} FROM {self._relation} "
                                 f"WHERE {where}", args)
        return self._json_of(rows[0]) if rows and rows[0][0] is not None else None

    async def start(self, high_water_mark: Any | None) -> Position:
        position: Position = {"after": None, "offset": 0}
        cursor = self._spec.cursor_column
        if cursor is None:
            return position
        position |= incremental.lower_position(high_water_mark, keyed=self._key is not None)
        args: list[Any] = []
        param, member = self._binders(args)
        where = " AND ".join(incremental.lower_terms(position, self.quote(cursor), param, member))
        column = self.quote(cursor)
        upper = await self._cursor_max(column, where, args)
        if upper is None:
            return incremental.bound(position, None, None)
        keys = None
        if self._key is not None:
            at_upper = f"{column} = {param(upper)}"
            found = await self._fetch(f"SELECT {self._json_select(self.quote(self._key))} FROM {self._relation} "
                                      f"WHERE {where} AND {at_upper} LIMIT {incremental.SEEN_LIMIT + 1}", args)
            keys = [self._json_of(r) for r in found]
        return incremental.bound(position, upper, keys)

    async def estimate(self, position: Position) -> int | None:
        if self._spec.table is None:
            return None
        approx = await self._approximate_rows()
        args: list[Any] = []
        where = where_clause(self._window(position, args))
        if approx is not None and approx >= EXACT_COUNT_BELOW:
            if self._slice is None:
                return int(approx)
            if (estimated := await self._estimate_where(where, args)) is not None:
                return estimated
        return int((await self._fetch(f"SELECT count(*) FROM {self._relation} {where}", args))[0][0])

    def high_water_mark(self, position: Position, previous: Any | None) -> Any | None:
        if self._spec.cursor_column is None:
            return None
        return incremental.next_mark(position, previous)

    def _advance(self, position: Position, rows: Sequence[Sequence[Any]]) -> Position:
        """The position after `rows`: the last key of a keyed read, the rows read so far otherwise."""
        if self._key is not None:
            return position | {"after": self._json_of(rows[-1])}
        return position | {"offset": int(position.get("offset") or 0) + len(rows)}

    @override
    async def chunks(
        self, plan: list[SelectItem], target_types: TargetTypes, position: Position, *, size: int, raw: bool
    ) -> AsyncIterator[Chunk]:
        """Decoded rows in Python: the key (when keyed) in front, then the columns, turned by the plan into
        the target's row with `row_converter`."""
        target_kinds = {name: target_types.kind(name) for name in target_types.spelled}
        keyed = self._key is not None
        read = [Column(KEY_SLOT, "", None), *self._columns] if keyed else self._columns
        convert = row_converter(read, plan, target_kinds, self.canonical)
        names = [item.target for item in plan]
        select = ", ".join(self.quote(c.name) for c in self._columns)
        async for rows, after in self._pages(select, position, size):
            out = [tuple(row) for row in rows] if convert is None else [convert(row) for row in rows]
            rows.clear()  # the reader still holds the page; the raw rows need not outlive their conversion
            yield Chunk(number=0, position=after, columns=names, rows=out)

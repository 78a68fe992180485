"""The plan of a sliced run (docs/spec.md §10): the ranges of the batch's `split` column, one per slice.

Every plan is a list of cut points c1 < … < ck of the column; its slices are `[-∞, c1) ∪ NULL`, `[c1, c2)`, …,
`[ck, +∞)`. So whatever the counts said, and whatever rows arrive after planning, the slices are contiguous,
never overlap and together hold every row: the first one is open below and takes the NULLs, the last one is
open above.

- **Integers.** `slices: N`: N ranges of equal width over [min, max] (fewer when the column has fewer than N
  possible values). Otherwise [min, max] is bisected by value, counting the rows of each half, until every
  range holds at most `maxRowsPerSlice` rows or is a single value (a value held by more rows than that stays
  one slice; so do the NULLs, which the first slice takes). Bisecting by value finds a dense cluster among
  outliers in about log2(max - min) steps. Adjacent ranges are then merged back, left to right, while their
  sum stays within the limit, so a sparse stretch does not become many near-empty slices.
- **Dates and timestamps** (the seed's rule): calendar windows by year; a year holding more than
  `maxRowsPerSlice` rows is split into its months, such a month into its weeks (Monday to Sunday, cut at the
  month's edges), such a week into its days; a day holding more stays one slice. A window holding no row is
  absorbed by the window before it (the first by the one after it), so ten empty years between two busy ones
  are one slice, not ten; its edges stay calendar-aligned. Timestamps with a zone are cut on UTC days.
  `slices: N`: N equal time spans over [min, max] (whole days for a date column).

Counting. Exact counts read the rows of every range they count: one bisection level or calendar level reads
the table once, so a plan costs a few reads of the column's index. That is a few seconds up to
EXACT_COUNTS_UP_TO rows. Above it (by the database's own estimate of the whole table) the plan counts with
the database's estimates (PostgreSQL's and MySQL's `EXPLAIN`, milliseconds each): the limit then holds as
well as the statistics do, which is what DataX and SeaTunnel settle for when they split a big table.
Estimates are used as proportions only: the parts of a window share the window's own estimate in the ratio
of theirs. Estimates are not additive, and a database without statistics for the column (MySQL without an
index on it) answers the whole table for every range; shared out, such answers split windows evenly instead
of dividing forever.
"""

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from schemas.api import SplitSpec
from schemas.messages import split_column_kind, split_value_unreadable
from service.connectors.base import SliceableSource
from service.slicing.ranges import SliceRange
from service.sync.errors import ConfigInvalid

log = logging.getLogger(__name__)

SLICEABLE = ("int", "date", "datetime")
"""The kinds a `split` column may have."""
EXACT_COUNTS_UP_TO = 5_000_000
"""Tables estimated above this many rows are planned with the database's row estimates, not exact counts."""
CALENDAR = ("year", "month", "week", "day")
"""The seed's windows, coarsest first: a window over the limit is split into windows of the next unit."""

Day = date | datetime
"""A point of a date or timestamp column (a `datetime` is a `date` too)."""
Leaf = tuple[Any, Any, int]
"""A window [lo, hi) of the column and the rows counted in it."""


async def plan_slices(source: SliceableSource, split: SplitSpec) -> list[SliceRange]:
    """The slices of one run of a batch with `split`, in column order; ConfigInvalid for a column that is not
    an integer, date or timestamp column (or a source that cannot be sliced)."""
    column = split.column
    kind = await source.column_kind(column)
    if kind not in SLICEABLE:
        raise ConfigInvalid(split_column_kind(column, kind or "?"))
    found = await source.bounds(column)
    if found is None:  # an empty table, or every value NULL: one slice takes everything
        return [SliceRange(column, kind, nulls=True)]
    if kind == "int":
        cuts: list[Any] = await _integer_cuts(source, split, kind, int(found[0]), int(found[1]))
        encode: Callable[[Any], Any] = int
    else:
        try:
            low, high = _day(kind, found[0]), _day(kind, found[1])
        except ValueError as exc:
            raise ConfigInvalid(split_value_unreadable(column, found[0])) from exc
        cuts = await _calendar_cuts(source, split, kind, low, high)
        encode = _iso
    plan = _ranges(column, kind, [encode(c) for c in cuts])
    log.debug("planned %d slices of %s", len(plan), column)
    return plan


def _ranges(column: str, kind: str, cuts: list[Any]) -> list[SliceRange]:
    edges: list[Any] = [None, *cuts, None]
    pairs = zip(edges, edges[1:], strict=False)
    return [SliceRange(column, kind, lo, hi, nulls=i == 0) for i, (lo, hi) in enumerate(pairs)]


class _Counter:
    """Counts the rows of a window [a, b) of the column as the plan will cut it: the window that starts the
    column is open below and takes the NULLs, the one that ends it is open above."""

    def __init__(self, source: SliceableSource, column: str, kind: str, start: Any, end: Any,
                 encode: Callable[[Any], Any]) -> None:
        self._source, self._column, self._kind = source, column, kind
        self._start, self._end, self._encode = start, end, encode
        self.exact = True
        self.whole = 0
        """The database's estimate of the table's rows."""

    def window(self, a: Any, b: Any) -> SliceRange:
        first = a == self._start
        return SliceRange(self._column, self._kind, None if first else self._encode(a),
                          None if b is None or b == self._end else self._encode(b), nulls=first)

    async def choose(self) -> None:
        """Exact counts, unless the database estimates the table above EXACT_COUNTS_UP_TO rows."""
        self.whole = await self._source.count_range(SliceRange(self._column, self._kind, nulls=True), exact=False)
        self.exact = self.whole <= EXACT_COUNTS_UP_TO
        if not self.exact:
            log.info("planning slices of %s from the database's estimates (about %d rows)", self._column,
                     self.whole)

    async def __call__(self, a: Any, b: Any) -> int:
        return max(0, await self._source.count_range(self.window(a, b), exact=self.exact))

    async def parts(self, rows: int, windows: list[tuple[Any, Any]]) -> list[int]:
        """The rows of each of `windows`, the parts of a window holding `rows`: counted, or estimated and
        shared out."""
        counted = [await self(a, b) for a, b in windows]
        return counted if self.exact else _shares(rows, counted)


def _shares(total: int, estimates: list[int]) -> list[int]:
    """`total` split in the ratio of `estimates` (evenly when they are all 0); the shares add up to `total`."""
    weights = estimates if any(estimates) else [1] * len(estimates)
    whole, done, out = sum(weights), 0, []
    for weight in weights:
        share = round(total * (done + weight) / whole) - round(total * done / whole)
        done += weight
        out.append(share)
    return out


# Integers.

async def _integer_cuts(source: SliceableSource, split: SplitSpec, kind: str, low: int, high: int) -> list[int]:
    span = high - low + 1
    if split.slices is not None:
        n = min(split.slices, span)
        return [low + (i * span) // n for i in range(1, n)]
    count = _Counter(source, split.column, kind, low, high + 1, int)
    await count.choose()
    rows = await count(low, high + 1) if count.exact else count.whole
    leaves = await _bisect(count, low, high + 1, rows, split.max_rows_per_slice)
    return [lo for lo, _, _ in _merged(leaves, split.max_rows_per_slice)[1:]]


async def _bisect(count: _Counter, lo: int, hi: int, rows: int, limit: int) -> list[Leaf]:
    """[lo, hi) cut by value until each range holds at most `limit` rows or one value. With exact counts one
    half is counted and the other is the rest; estimates are asked for both and share out `rows`."""
    if rows <= limit or hi - lo <= 1:
        return [(lo, hi, rows)]
    mid = lo + (hi - lo) // 2
    if count.exact:
        left = await count(lo, mid)
        right = max(0, rows - left)
    else:
        left, right = await count.parts(rows, [(lo, mid), (mid, hi)])
    return [*await _bisect(count, lo, mid, left, limit), *await _bisect(count, mid, hi, right, limit)]


def _merged(leaves: list[Leaf], limit: int) -> list[Leaf]:
    """Adjacent windows joined, left to right, while the sum of their rows stays within `limit`."""
    out: list[Leaf] = []
    for lo, hi, rows in leaves:
        if out and out[-1][2] + rows <= limit:
            out[-1] = (out[-1][0], hi, out[-1][2] + rows)
        else:
            out.append((lo, hi, rows))
    return out


# Dates and timestamps.

def _day(kind: str, value: Any) -> Day:
    """A bound of a date or timestamp column (ISO 8601 text) as a point; a zoned timestamp in UTC."""
    if kind == "date":
        return date.fromisoformat(str(value)[:10])
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(point: Day) -> str:
    return point.isoformat()


def _floor(point: Day, unit: str) -> Day:
    """The start of the calendar `unit` (year, month, week, day) holding `point`."""
    if isinstance(point, datetime):
        point = point.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "year":
        return point.replace(month=1, day=1)
    if unit == "month":
        return point.replace(day=1)
    if unit == "week":
        return point - timedelta(days=point.weekday())
    return point


def _next(point: Day, unit: str) -> Day | None:
    """The start of the `unit` after the one starting at `point`; None past the calendar's end (year 9999)."""
    try:
        if unit == "year":
            return point.replace(year=point.year + 1)
        if unit == "month":
            return point.replace(year=point.year + point.month // 12, month=point.month % 12 + 1)
        return point + timedelta(days=7 if unit == "week" else 1)
    except (OverflowError, ValueError):
        return None


def _windows(a: Day, b: Day | None, unit: str) -> list[tuple[Day, Day | None]]:
    """[a, b) cut at the starts of the `unit`s inside it (b None: to the calendar's end)."""
    edges: list[Day | None] = [a]
    point = _next(_floor(a, unit), unit)
    while point is not None and (b is None or point < b):
        edges.append(point)
        point = _next(point, unit)
    edges.append(b)
    return [(lo, hi) for lo, hi in zip(edges, edges[1:], strict=False) if lo is not None]


async def _calendar_cuts(source: SliceableSource, split: SplitSpec, kind: str, low: Day, high: Day) -> list[Day]:
    if split.slices is not None:
        return _equal_spans(low, high, split.slices)
    start = _floor(low, "year")
    end = _next(_floor(high, "year"), "year")
    count = _Counter(source, split.column, kind, start, end, _iso)
    await count.choose()
    return _absorb_empty(await _refine(count, start, end, count.whole, -1, split.max_rows_per_slice))


async def _refine(count: _Counter, lo: Day, hi: Day | None, rows: int, level: int, limit: int) -> list[Leaf]:
    """The window [lo, hi) of unit CALENDAR[level] holding `rows`, or its windows of the next unit, refined in
    turn, when it holds more than `limit` rows (level -1: the whole column, always cut into years)."""
    if level >= 0 and (rows <= limit or level == len(CALENDAR) - 1):
        return [(lo, hi, rows)]
    windows = _windows(lo, hi, CALENDAR[level + 1])
    leaves: list[Leaf] = []
    for (a, b), part in zip(windows, await count.parts(rows, windows), strict=True):
        leaves.extend(await _refine(count, a, b, part, level + 1, limit))
    return leaves


def _absorb_empty(leaves: list[Leaf]) -> list[Day]:
    """The cuts between the windows that hold rows: an empty window joins the one before it (leading empty
    windows the first one with rows)."""
    cuts: list[Day] = []
    seen_rows = False
    for lo, _, rows in leaves:
        if rows > 0:
            if seen_rows:
                cuts.append(lo)
            seen_rows = True
    return cuts


def _equal_spans(low: Day, high: Day, n: int) -> list[Day]:
    """Cuts of [low, high] into `n` equal time spans: whole days for dates (at most one slice a day)."""
    if isinstance(low, datetime) and isinstance(high, datetime):
        span = high - low
        cuts = [low + span * i / n for i in range(1, n)]
        return sorted({c for c in cuts if low < c <= high})
    assert not isinstance(low, datetime) and not isinstance(high, datetime)
    days = (high - low).days + 1
    n = min(n, days)
    return [low + timedelta(days=(i * days) // n) for i in range(1, n)]


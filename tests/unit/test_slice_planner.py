"""The slice planner over an in-memory column (service/slicing/planner.py): every plan covers the column once
(contiguous half-open ranges, open at both ends, NULLs in exactly one slice), holds the row limit where the
data allows it, follows the seed's year → month → week → day rule on dates, and forces N slices when asked."""

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from schemas.api import SplitSpec
from schemas.messages import source_column_missing, split_column_kind, split_value_unreadable
from service.connectors.base import SliceableSource
from service.slicing import planner
from service.slicing.planner import plan_slices
from service.slicing.ranges import SliceRange
from service.sync.errors import ConfigInvalid


def _point(kind: str, value: Any) -> Any:
    if kind == "int":
        return int(value)
    if kind == "date":
        return date.fromisoformat(value)
    return datetime.fromisoformat(value)


def _json(value: Any) -> Any:
    return value if isinstance(value, int) else value.isoformat()


def inside(where: SliceRange, value: Any) -> bool:
    if value is None:
        return where.nulls
    return ((where.lo is None or value >= _point(where.kind, where.lo))
            and (where.hi is None or value < _point(where.kind, where.hi)))


class Column:
    """A one-column table in memory answering the planner's questions; `estimate` scales what the
    database's statistics would say (exact=False)."""

    def __init__(self, kind: str, values: list[Any], *, estimate: int = 1, blind: bool = False) -> None:
        self.kind, self.rows, self.estimate, self.blind = kind, Counter(values), estimate, blind
        self.asked: list[bool] = []

    async def column_kind(self, column: str) -> str | None:
        if column != "c":
            raise ConfigInvalid(source_column_missing(column))
        return self.kind

    async def bounds(self, column: str) -> tuple[Any, Any] | None:
        present = [v for v in self.rows if v is not None]
        return (_json(min(present)), _json(max(present))) if present else None

    async def count_range(self, where: SliceRange, *, exact: bool = True) -> int:
        self.asked.append(exact)
        if self.blind and not exact:  # no statistics for the column: every range "holds" the whole table
            return sum(self.rows.values()) * self.estimate
        found = sum(n for value, n in self.rows.items() if inside(where, value))
        return found if exact else found * self.estimate

    def restrict(self, where: SliceRange) -> None:
        raise AssertionError("the planner only asks")


def split(max_rows: int = 500_000, slices: int | None = None) -> SplitSpec:
    return SplitSpec(column="c", max_rows_per_slice=max_rows, slices=slices)


def in_slices(plan: list[SliceRange], source: Column) -> list[int]:
    """The rows of each slice; asserts the plan's shape and that every row is in exactly one slice."""
    assert isinstance(source, SliceableSource)
    assert plan[0].lo is None and plan[-1].hi is None
    assert [s.nulls for s in plan] == [True] + [False] * (len(plan) - 1)
    assert all(a.hi == b.lo and a.hi is not None for a, b in zip(plan, plan[1:], strict=False))
    assert all(s.column == "c" and s.kind == source.kind for s in plan)
    for value in source.rows:
        assert sum(inside(s, value) for s in plan) == 1, value
    return [sum(n for value, n in source.rows.items() if inside(s, value)) for s in plan]


def single_value(where: SliceRange, source: Column) -> bool:
    return len({v for v in source.rows if v is not None and inside(where, v)}) <= 1


async def test_integer_slices_cover_the_column_and_hold_the_limit() -> None:
    rnd = random.Random(12)
    values = [rnd.randint(-5_000, 80_000) for _ in range(20_000)] + [None] * 37 + [10**15, -(10**12)]
    source = Column("int", values)
    plan = await plan_slices(source, split(1_000))
    counts = in_slices(plan, source)
    assert sum(counts) == len(values)
    assert max(counts) <= 1_000
    assert 20 <= len(plan) <= 30  # 20,039 rows at most 1,000 a slice, merged back: not hundreds
    assert all(isinstance(s.lo, int) for s in plan[1:])


async def test_a_value_held_by_more_rows_than_the_limit_stays_one_slice() -> None:
    source = Column("int", [7] * 2_500 + list(range(1, 300)) + [None] * 3)
    plan = await plan_slices(source, split(200))
    counts = in_slices(plan, source)
    big = [s for s, n in zip(plan, counts, strict=True) if n > 200]
    assert len(big) == 1 and single_value(big[0], source) and inside(big[0], 7)


async def test_sparse_stretches_are_merged_back_into_few_slices() -> None:
    """Bisecting [1, 10^12] by value leaves about 40 near-empty halves on the way to the dense cluster."""
    source = Column("int", list(range(1, 1_001)) + [10**12])
    plan = await plan_slices(source, split(500))
    counts = in_slices(plan, source)
    assert len(plan) <= 4 and max(counts) <= 500


async def test_slices_n_gives_n_ranges_of_equal_width() -> None:
    source = Column("int", [*range(0, 1_000), None])
    plan = await plan_slices(source, split(slices=4))
    assert [(s.lo, s.hi) for s in plan] == [(None, 250), (250, 500), (500, 750), (750, None)]
    assert in_slices(plan, source) == [251, 250, 250, 250]
    few = Column("int", [5, 6, 7])
    assert len(await plan_slices(few, split(slices=10))) == 3  # no more slices than possible values
    assert few.asked == []  # a forced plan counts nothing


async def test_an_all_null_column_and_an_empty_table_are_one_slice() -> None:
    for values in ([None] * 10, []):
        source = Column("int", values)
        plan = await plan_slices(source, split(1))
        assert plan == [SliceRange("c", "int", None, None, nulls=True)]
        assert in_slices(plan, source) == [len(values)]


async def test_other_kinds_and_missing_columns_are_refused() -> None:
    with pytest.raises(ConfigInvalid) as error:
        await plan_slices(Column("string", ["a"]), split())
    assert error.value.reason == split_column_kind("c", "string")
    with pytest.raises(ConfigInvalid) as error:
        await plan_slices(Column("int", [1]), SplitSpec(column="nope"))
    assert error.value.reason == source_column_missing("nope")

    class EpochSeconds(Column):  # a SQLite DATETIME column holding numbers
        async def bounds(self, column: str) -> tuple[Any, Any] | None:
            return 1_700_000_000, 1_800_000_000

    with pytest.raises(ConfigInvalid) as error:
        await plan_slices(EpochSeconds("datetime", []), split())
    assert error.value.reason == split_value_unreadable("c", 1_700_000_000)


async def test_big_tables_are_planned_from_the_database_estimates() -> None:
    values = list(range(2_000))
    exact = Column("int", values)
    await plan_slices(exact, split(500))
    assert exact.asked[0] is False and all(exact.asked[1:])  # one estimate of the whole table, then exact counts

    big = Column("int", values, estimate=10_000)  # the statistics say 20 million rows
    assert 20_000_000 > planner.EXACT_COUNTS_UP_TO
    plan = await plan_slices(big, split(5_000_000))
    assert not any(big.asked)
    counts = in_slices(plan, big)
    assert len(plan) == 4 and counts == [500] * 4  # 5 million estimated rows a slice


async def test_estimates_without_statistics_split_evenly_instead_of_forever() -> None:
    """A database that answers the whole table for every range (MySQL without an index on the column)."""
    ints = Column("int", list(range(10_000)), estimate=1_000, blind=True)  # 10 million rows by the estimate
    plan = await plan_slices(ints, split(1_000_000))
    assert in_slices(plan, ints) == [625] * 16 and len(ints.asked) < 40  # halved four times: 625,000 a slice

    days = Column("date", _days(date(2020, 1, 1), date(2022, 12, 31), 10), estimate=1_000, blind=True)
    plan = await plan_slices(days, split(1_000_000))
    counts = in_slices(plan, days)
    assert sum(counts) == 10_960 and len(plan) == 36 and len(days.asked) < 60  # each year its 12 months


def _days(first: date, last: date, per_day: int) -> list[date]:
    out = []
    while first <= last:
        out += [first] * per_day
        first += timedelta(days=1)
    return out


def _skewed_dates() -> list[Any]:
    """2019: 40 rows; 2020: January 30, February 20, March one a day but 260 in the week of the 16th (150 on
    the 16th), nothing April to November, 5 in December; 2021: 80; 2022: none; 2023: 10; and 5 NULLs."""
    values: list[Any] = [date(2019, 1, 1) + timedelta(days=9 * i) for i in range(40)]
    values += _days(date(2020, 1, 1), date(2020, 1, 30), 1) + _days(date(2020, 2, 1), date(2020, 2, 20), 1)
    values += _days(date(2020, 3, 1), date(2020, 3, 15), 1) + _days(date(2020, 3, 23), date(2020, 3, 31), 1)
    values += [date(2020, 3, 16)] * 150 + [date(2020, 3, 17)] * 60 + _days(date(2020, 3, 18), date(2020, 3, 22), 10)
    values += [date(2020, 12, 24)] * 5 + [date(2021, 1, 1) + timedelta(days=4 * i) for i in range(80)]
    values += [date(2023, 6, 1)] * 10 + [None] * 5
    return values


SKEWED_PLAN = [
    (None, "2020-01-01"),  # 2019 (40 rows + the NULLs) is one year
    ("2020-01-01", "2020-02-01"), ("2020-02-01", "2020-03-01"),  # 2020 holds more: its months
    ("2020-03-01", "2020-03-02"), ("2020-03-02", "2020-03-09"), ("2020-03-09", "2020-03-16"),  # March: weeks
    ("2020-03-16", "2020-03-17"), ("2020-03-17", "2020-03-18"), ("2020-03-18", "2020-03-19"),  # the busy week:
    ("2020-03-19", "2020-03-20"), ("2020-03-20", "2020-03-21"), ("2020-03-21", "2020-03-22"),  # its days (the
    ("2020-03-22", "2020-03-23"),  # 16th holds 150 rows and stays one slice)
    ("2020-03-23", "2020-03-30"),
    ("2020-03-30", "2020-12-01"),  # March's last days; the empty months April to November join them
    ("2020-12-01", "2021-01-01"),
    ("2021-01-01", "2023-01-01"),  # 2021 is one year; the empty 2022 joins it
    ("2023-01-01", None),
]


async def test_year_month_week_day_rule_on_a_skewed_date_distribution() -> None:
    source = Column("date", _skewed_dates())
    plan = await plan_slices(source, split(100))
    assert [(s.lo, s.hi) for s in plan] == SKEWED_PLAN
    counts = in_slices(plan, source)
    assert counts[0] == 45 and counts[6] == 150 and counts[7] == 60
    assert all(n <= 100 for i, n in enumerate(counts) if i != 6)


async def test_the_same_rule_on_a_zoned_timestamp_column_cuts_utc_days() -> None:
    def moment(day: Any) -> Any:
        return None if day is None else datetime(day.year, day.month, day.day, 13, 30, tzinfo=UTC)

    source = Column("datetime", [moment(d) for d in _skewed_dates()])
    plan = await plan_slices(source, split(100))
    expected = [(None if lo is None else f"{lo}T00:00:00+00:00", None if hi is None else f"{hi}T00:00:00+00:00")
                for lo, hi in SKEWED_PLAN]
    assert [(s.lo, s.hi) for s in plan] == expected
    assert sum(in_slices(plan, source)) == sum(source.rows.values()) == 474


async def test_slices_n_on_dates_and_timestamps_are_equal_time_spans() -> None:
    days = Column("date", _days(date(2020, 1, 1), date(2020, 12, 31), 2) + [None])
    plan = await plan_slices(days, split(slices=3))
    assert [(s.lo, s.hi) for s in plan] == [(None, "2020-05-02"), ("2020-05-02", "2020-09-01"),
                                            ("2020-09-01", None)]  # 366 days: 122 each
    assert in_slices(plan, days) == [245, 244, 244]

    start = datetime(2024, 1, 1, tzinfo=UTC)
    moments = Column("datetime", [start + timedelta(hours=h) for h in range(0, 97)])
    plan = await plan_slices(moments, split(slices=4))
    assert [s.lo for s in plan[1:]] == ["2024-01-02T00:00:00+00:00", "2024-01-03T00:00:00+00:00",
                                        "2024-01-04T00:00:00+00:00"]
    assert in_slices(plan, moments) == [24, 24, 24, 25]
    one = Column("datetime", [start] * 3)
    assert len(await plan_slices(one, split(slices=4))) == 1

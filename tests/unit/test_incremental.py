"""The high-water mark with the keys seen at it: window terms, the next mark, and the bound."""

from service.sync import incremental
from service.sync.incremental import SEEN_LIMIT, Mark, bound, lower_position, next_mark, window_terms


def render(position: dict, keyed: bool = True) -> tuple[str, list]:
    args: list = []

    def param(value):
        args.append(value)
        return "?"

    def member(values):
        args.append(list(values))
        return "k IN ?"

    return " AND ".join(window_terms(position, "c", param, member if keyed else None)), args


def test_marks_parse_from_their_json_and_from_a_legacy_plain_value() -> None:
    assert Mark.parse(None) is None
    assert Mark.parse({"value": 5, "seen": [1, 2]}) == Mark(5, (1, 2), False)
    assert Mark.parse("2026-01-01") == Mark("2026-01-01", (), True)
    assert Mark.parse(Mark(3, (9,)).to_json()) == Mark(3, (9,))


def test_the_window_reads_from_the_mark_inclusive_minus_the_keys_seen_at_it() -> None:
    position = bound(lower_position({"value": 10, "seen": [7, 8]}, keyed=True), 20, [3])
    sql, args = render(position)
    assert sql == "c >= ? AND NOT (c = ? AND k IN ?) AND c <= ? AND (c <> ? OR k IN ?)"
    assert args == [10, 10, [7, 8], 20, 20, [3]]


def test_without_a_key_or_with_a_legacy_mark_the_window_is_exclusive() -> None:
    sql, _ = render(bound(lower_position({"value": 10, "seen": [7]}, keyed=False), 20, None), keyed=False)
    assert sql == "c > ? AND c <= ?"
    sql, _ = render(bound(lower_position(10, keyed=True), 20, [1]))
    assert sql.startswith("c > ?")


def test_nothing_new_reads_nothing_and_keeps_the_mark() -> None:
    previous = {"value": 10, "seen": [7], "exclusive": False}
    position = bound(lower_position(previous, keyed=True), None, None)
    assert render(position)[0] == "1 = 0"
    assert next_mark(position, previous) == previous


def test_the_next_mark_carries_the_keys_seen_when_the_value_did_not_move() -> None:
    previous = {"value": 10, "seen": [7]}
    position = bound(lower_position(previous, keyed=True), 10, [9])
    assert next_mark(position, previous) == {"value": 10, "seen": [7, 9], "exclusive": False}
    moved = bound(lower_position(previous, keyed=True), 11, [1])
    assert next_mark(moved, previous) == {"value": 11, "seen": [1], "exclusive": False}


def test_too_many_rows_at_the_newest_value_make_an_exclusive_mark() -> None:
    position = bound(lower_position(None, keyed=True), 5, list(range(SEEN_LIMIT + 1)))
    assert position["upper_keys"] is None
    assert next_mark(position, None) == {"value": 5, "seen": [], "exclusive": True}
    assert "c <= ?" in render(position)[0] and "OR" not in render(position)[0]
    assert incremental.lower_position(next_mark(position, None), keyed=True)["lower_exclusive"] is True

"""Incremental sync on a cursor column, shared by every source with `Capabilities.cursor`.

The high-water mark stored per batch (and advanced only by a successful run) is
`{"value": <max cursor>, "seen": [<keys of the rows synced at that value>], "exclusive": bool}`.
A run reads `cursor >= value` but skips the rows at `value` whose key is in `seen`, so a row that
arrives late with the same cursor value as the mark is read by the next run and no row is read twice
(dlt's `last_value` + `unique_hashes`). The window's upper end is fixed when the run starts, together
with the keys at that upper value: a row arriving during the run with exactly that value waits for
the next run instead of being read now and again later.

Bound: at most SEEN_LIMIT keys are kept. When more rows than that share the newest cursor value, the
mark is stored `exclusive` (no keys) and the next run reads `cursor > value`: late rows sharing that
exact value would then be missed, but nothing is ever duplicated. A legacy plain-value mark, and any
source without a single-column key (queries, key-less tables), use the same exclusive reading.

Sources render the terms in their dialect through two callbacks: `param(value) -> sql` binds a cursor
value, `member(values) -> sql` tests the key column against a list of keys.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from service.connectors.base import Position

SEEN_LIMIT = 10_000

Param = Callable[[Any], str]
Member = Callable[[Sequence[Any]], str]


@dataclass(frozen=True)
class Mark:
    value: Any
    seen: tuple[Any, ...] = ()
    exclusive: bool = False

    @classmethod
    def parse(cls, stored: Any) -> "Mark | None":
        """A stored mark; a bare value (written before marks carried keys) reads as exclusive."""
        if stored is None:
            return None
        if isinstance(stored, dict) and "value" in stored:
            return cls(stored["value"], tuple(stored.get("seen") or ()), bool(stored.get("exclusive")))
        return cls(stored, (), True)

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "seen": list(self.seen), "exclusive": self.exclusive}


def lower_position(stored: Any, keyed: bool) -> Position:
    """The window's lower end from the previous mark; without a key, only exclusive reading is possible."""
    mark = Mark.parse(stored)
    if mark is None:
        return {"lower": None, "lower_seen": [], "lower_exclusive": False}
    exclusive = mark.exclusive or not keyed
    return {"lower": mark.value, "lower_seen": [] if exclusive else list(mark.seen), "lower_exclusive": exclusive}


def lower_terms(position: Position, cursor: str, param: Param, member: Member | None) -> list[str]:
    """Rows beyond the previous mark: `> value`, or `>= value` minus the keys already seen at it."""
    lower = position.get("lower")
    if lower is None:
        return [f"{cursor} IS NOT NULL"]
    if position.get("lower_exclusive") or member is None:
        return [f"{cursor} > {param(lower)}"]
    terms = [f"{cursor} >= {param(lower)}"]
    seen = position.get("lower_seen") or []
    if seen:
        terms.append(f"NOT ({cursor} = {param(lower)} AND {member(seen)})")
    return terms


def bound(position: Position, upper: Any | None, keys_at_upper: Sequence[Any] | None) -> Position:
    """Fix the upper end: the newest cursor value at the start and the keys found at it (None: all rows
    at `upper`, when they are too many to remember or there is no key)."""
    if upper is None:
        return position | {"upper": None, "upper_keys": None}
    keys = None if keys_at_upper is None or len(keys_at_upper) > SEEN_LIMIT else list(keys_at_upper)
    return position | {"upper": upper, "upper_keys": keys}


def window_terms(position: Position, cursor: str, param: Param, member: Member | None) -> list[str]:
    """All WHERE terms of the run's window; no upper end means nothing is new."""
    upper = position.get("upper")
    if upper is None:
        return ["1 = 0"]
    terms = lower_terms(position, cursor, param, member) + [f"{cursor} <= {param(upper)}"]
    keys = position.get("upper_keys")
    if keys is not None and member is not None:
        terms.append(f"({cursor} <> {param(upper)} OR {member(keys)})")
    return terms


def next_mark(position: Position, previous: Any | None) -> Any | None:
    """The mark a successful run stores: unchanged when nothing was new."""
    if "upper" not in position or position["upper"] is None:
        return previous
    upper, keys = position["upper"], position.get("upper_keys")
    if keys is None:
        return Mark(upper, (), True).to_json()
    carried = (position.get("lower_seen") or []) if upper == position.get("lower") else []
    seen = list(dict.fromkeys([*carried, *keys]))
    if len(seen) > SEEN_LIMIT:
        return Mark(upper, (), True).to_json()
    return Mark(upper, tuple(seen)).to_json()

"""Rows a run sets aside instead of failing, under the batch's `errorLimit` (docs/spec.md §9).

A source that cannot convert a row, or a target that refuses one (a constraint, a value too long), puts it
on `Chunk.rejected` with its reason; the target stores the count, and the chunk's rows themselves, with the
chunk's checkpoint (`Checkpoint.after`), so they are told exactly once even across a crash. This module
holds the engine's side: the tally of a run, the limit check and the failure that names the reasons.
"""

import base64
import math
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from schemas.api import ErrorLimitSpec
from schemas.events import ErrorCode
from schemas.messages import reason_count, rejected_rows_limit, too_many_rejected
from service.connectors.base import Checkpoint, RejectedRow
from service.sync.errors import SyncError

TOP_REASONS = 3
"""How many distinct reasons a failure beyond the limit names (the most frequent first)."""


class TooManyRejected(SyncError):
    """More rows were rejected than the batch's `errorLimit` allows: terminal, a retry would reject them again."""

    code = ErrorCode.TARGET_ERROR


Attempt = Callable[[int, int], Awaitable[str | None]]
"""Writes rows [lo, hi) of a chunk inside a savepoint: None when they went in, else the target's reason
(the savepoint rolled back)."""


async def halve(count: int, attempt: Attempt, *, refused_whole: bool = False) -> list[tuple[int, str]]:
    """The rows of a chunk a target refuses, found by halving: a range that goes in is done, a refused one
    is split until its refused rows stand alone; k bad rows among n cost about 2·k·log2(n) attempts.
    `refused_whole`: the caller saw the whole chunk refused already, so halving starts at once."""
    refused: list[tuple[int, str]] = []

    async def split(lo: int, hi: int, known: str | None = None) -> None:
        reason = known if known is not None else await attempt(lo, hi)
        if reason is None:
            return
        if hi - lo == 1:
            refused.append((lo, reason))
            return
        mid = (lo + hi) // 2
        await split(lo, mid)
        await split(mid, hi)

    if count:
        await split(0, count, "" if refused_whole and count > 1 else None)
    return refused


def jsonable(value: Any) -> Any:
    """A row value as JSON can carry it: text for decimals, times, UUIDs, non-finite floats; bytes as base64."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    return str(value)


def row_of(columns: list[str], values: Any) -> dict[str, Any]:
    """A rejected row as the event carries it: column → JSON value."""
    return {name: jsonable(value) for name, value in zip(columns, values, strict=False)}


def rejected_total(checkpoint: Checkpoint) -> int:
    """Rows rejected so far in the run's checkpoint chain."""
    return int(checkpoint.extra.get("rejected", 0))


def rows_of_last_chunk(checkpoint: Checkpoint) -> list[RejectedRow]:
    """The rejected rows stored with the checkpoint's chunk: told again on resume (same event ids), since a
    crash may have come between the chunk's commit and their outbox write."""
    return [RejectedRow(row=r["row"], reason=r["reason"]) for r in checkpoint.extra.get("rejectedRows") or []]


def event_id(checkpoint_key: uuid.UUID, chunk: int, index: int) -> uuid.UUID:
    """The `eventId` of the chain's `index`-th rejected row of `chunk`: a row told twice is one event."""
    return uuid.uuid5(checkpoint_key, f"rejected:{chunk}:{index}")


class Tally:
    """The reasons seen in this execution of a run, and the check against its limit."""

    def __init__(self, limit: ErrorLimitSpec | None) -> None:
        self.limit = limit
        self.reasons: Counter[str] = Counter()

    def add(self, rows: list[RejectedRow]) -> None:
        self.reasons.update(row.reason for row in rows)

    def check_records(self, rejected: int) -> None:
        """After each chunk: beyond `records`, the run stops at once."""
        if rejected and (self.limit is None or (self.limit.records is not None and rejected > self.limit.records)):
            raise self._exceeded(rejected)

    def check_ratio(self, rejected: int, read: int) -> None:
        """At the end, before the target publishes: beyond `ratio` of the rows read, the run fails."""
        ratio = self.limit.ratio if self.limit is not None else None
        if rejected and ratio is not None and rejected > ratio * max(read, 1):
            raise self._exceeded(rejected)

    def _exceeded(self, rejected: int) -> TooManyRejected:
        limit = self.limit or ErrorLimitSpec(records=0)
        reasons = [reason_count(reason, count) for reason, count in self.reasons.most_common(TOP_REASONS)]
        return TooManyRejected(too_many_rejected(rejected, rejected_rows_limit(limit.records, limit.ratio), reasons))

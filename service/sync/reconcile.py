"""Reconciliation of a full run: the source's and the target's row counts after it, and whether they agree
as the write mode expects (the seed's system compares `sfNum` with `dbNum`).

Counts are cheap ones only: `COUNT(*)` of a source table and of the target table (`RowCounter`); a query
source or a file counts the rows the run read, a file target the rows it wrote. An incremental run is not
reconciled (it reads a window, not the source). A count that fails is logged and leaves the run
unreconciled (null), never failed: the rows are already published.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from schemas.api import WriteMode

log = logging.getLogger(__name__)

TARGET_BEFORE = "targetBefore"
"""Checkpoint `extra` key: the target's count when an append run began, kept across resumes."""


@runtime_checkable
class RowCounter(Protocol):
    """A source or target that can count its table's rows cheaply (None: it cannot, e.g. a query)."""

    async def count_rows(self) -> int | None: ...


@dataclass(frozen=True)
class Reconciliation:
    source_count: int
    target_count: int
    reconciled: bool


def agrees(mode: WriteMode, *, source: int, target: int, before: int | None, written: int, rejected: int) -> bool:
    """Whether the counts are what the write mode makes of the source.

    overwrite: the target holds the source's rows but the rejected ones. append: the target grew by exactly
    the rows written, and those are the source's but the rejected ones (without a count from before the run,
    only the latter). upsert: every source row but the rejected ones is in the target, which may hold more.
    """
    kept = source - rejected
    if mode is WriteMode.OVERWRITE:
        return target == kept
    if mode is WriteMode.APPEND:
        return written == kept and (before is None or target - before == written)
    return target >= kept


async def count(side: object, name: str, timeout: float) -> int | None:
    """The side's own count, or None when it has none or counting failed or took `timeout` s (logged)."""
    if not isinstance(side, RowCounter):
        return None
    try:
        async with asyncio.timeout(timeout):
            return await side.count_rows()
    except Exception as exc:
        log.warning("the %s could not be counted for reconciliation: %s", name, exc)
        return None

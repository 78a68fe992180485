"""How long the projector remembers which events it projected.

`projected_events` makes projection idempotent by eventId, one row per event for ever unless pruned. A run
finished longer ago than the retention (`BATCHSYNC_LEDGER_RETENTION_SECONDS`) is settled: its rows are
pruned, and any of its events read again later (a consumer reset to the earliest offset after a lost log,
docs/brokers.md) counts as projected, so the history of a settled run never changes. Run history itself
is kept.
"""

import uuid
from collections.abc import Collection
from datetime import timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.status import TERMINAL
from service.db.models import ProjectedEvent, RunHistory

PRUNE_BATCH = 10_000


def _settled(retention: timedelta) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return (RunHistory.status.in_(sorted(TERMINAL)), RunHistory.finished_at < func.now() - retention)


async def settled_runs(session: AsyncSession, run_ids: Collection[uuid.UUID], retention: timedelta) -> set[uuid.UUID]:
    """Those of `run_ids` that finished longer ago than the retention."""
    if not run_ids:
        return set()
    found = await session.scalars(select(RunHistory.run_id).where(RunHistory.run_id.in_(list(run_ids)),
                                                                  *_settled(retention)))
    return set(found.all())


async def prune_projected(session: AsyncSession, retention: timedelta) -> int:
    """Delete up to PRUNE_BATCH `projected_events` rows of settled runs; returns how many."""
    doomed = (select(ProjectedEvent.event_id).join(RunHistory, RunHistory.run_id == ProjectedEvent.run_id)
              .where(*_settled(retention)).limit(PRUNE_BATCH))
    deleted = await session.scalars(delete(ProjectedEvent).where(ProjectedEvent.event_id.in_(doomed))
                                    .returning(ProjectedEvent.event_id))
    return len(deleted.all())

"""Fold lifecycle events into `run_history`, once per eventId, whatever order or repetition they come in.

The upsert is compiled from the fold table (service/history/folds.py), whose every rule is monotonic
(counts only rise, a finished run never goes back to RUNNING), so replaying the log, or part of it, over an
existing projection changes nothing.
"""

from typing import Any, assert_never

from sqlalchemy import ColumnElement, case, delete, func
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.events import LifecycleEvent
from schemas.status import TERMINAL
from service.db.models import ConsumerOffset, ProjectedEvent, RunHistory
from service.history.folds import RUN_HISTORY, Merge, fold_for

PROJECTOR_GROUP_SUFFIX = ".projector"


def projector_group(topic_prefix: str) -> str:
    """The projector's consumer group, also the key of its offsets in `consumer_offsets`."""
    return f"{topic_prefix}{PROJECTOR_GROUP_SUFFIX}"


async def project(session: AsyncSession, event: LifecycleEvent) -> bool:
    """Apply `event` to the run's history row; False when this eventId was projected before."""
    claimed = await session.execute(
        insert(ProjectedEvent)
        .values(event_id=event.event_id, run_id=event.run_id)
        .on_conflict_do_nothing(index_elements=[ProjectedEvent.event_id])
        .returning(ProjectedEvent.event_id)
    )
    if claimed.first() is None:
        return False
    if event.run_id is not None:
        await session.execute(upsert(event))
    return True


async def clear(session: AsyncSession, group_id: str | None = None) -> None:
    """Wipe the projection and the offsets it was built from (every projector group unless one is named)."""
    await session.execute(delete(RunHistory))
    await session.execute(delete(ProjectedEvent))
    offsets = delete(ConsumerOffset)
    if group_id is not None:
        offsets = offsets.where(ConsumerOffset.group_id == group_id)
    else:
        offsets = offsets.where(ConsumerOffset.group_id.endswith(PROJECTOR_GROUP_SUFFIX))
    await session.execute(offsets)


def upsert(event: LifecycleEvent) -> Insert:
    """The event's fold entry as one statement: its values inserted for a new run, each merged by its
    rule into an existing one."""
    table = RUN_HISTORY
    rules = fold_for(event).history
    stmt = insert(table).values(run_id=event.run_id, **{name: rule.value(event) for name, rule in rules.items()})
    still_open = table.c.status.not_in(sorted(TERMINAL))
    updates = {name: merged(rule.merge, table.c[name], stmt.excluded[name], still_open)
               for name, rule in rules.items()}
    return stmt.on_conflict_do_update(index_elements=[table.c.run_id], set_=updates)


def merged(merge: Merge, old: ColumnElement[Any], new: ColumnElement[Any],
           still_open: ColumnElement[bool]) -> ColumnElement[Any]:
    """A rule in SQL; `folds.combine` is the same rule in Python."""
    match merge:
        case Merge.FIRST:
            return func.coalesce(old, new)
        case Merge.LATEST:
            return new
        case Merge.LATEST_KNOWN:
            return func.coalesce(new, old)
        case Merge.LOWEST:
            return func.least(old, new)
        case Merge.HIGHEST:
            return func.greatest(old, new)
        case Merge.HIGHEST_WHILE_OPEN:
            return case((still_open, func.greatest(old, new)), else_=old)
        case Merge.WHILE_OPEN:
            return case((still_open, new), else_=old)
        case Merge.COUNT:
            return old + new
        case _:
            assert_never(merge)

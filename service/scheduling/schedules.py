"""Firing due schedules, in the state store: one transaction per tick, holding the row locks of the due batches.

A due batch (`next_fire_time <= now()`, on the database's clock) is locked with SKIP LOCKED, so two schedulers
never handle the same batch at once; its fire time is the latest one due (after downtime: one catch-up fire,
not one per missed time) and its `next_fire_time` moves past now in the same transaction. The fire inserts the
PENDING run and queues its `BatchSyncRequested` in the outbox, as the API does for a sync; a run id derived from
the fire's `requestId` makes a second scheduler's attempt at the same fire a no-op. A fire while a run of the
batch is active starts nothing and is told as `BatchSyncSkipped` on the events topic.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from croniter import CroniterError
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import ScheduleSpec
from schemas.events import BatchSyncRequested, BatchSyncSkipped, Trigger
from schemas.topics import Topics
from service.db.models import Batch, Run
from service.runs.lifecycle import active_run, lease_from_now, new_run
from service.runs.outbox import add_event
from service.runs.requests import PENDING_GRACE_SECONDS
from service.runs.snapshot import run_id_for
from service.scheduling.fires import fire_request_id, latest_fire, next_fire

log = logging.getLogger(__name__)

PRODUCER = "batchsync-scheduler"
REQUESTED_BY = "scheduler"


class FireOutcome(StrEnum):
    FIRED = "fired"
    SKIPPED = "skipped"
    """A run of the batch was active: recorded as `BatchSyncSkipped`."""
    ALREADY_FIRED = "already fired"
    """Another scheduler fired this time already."""


@dataclass(frozen=True)
class Fire:
    batch_id: int
    fire_time: datetime
    request_id: str
    outcome: FireOutcome


def schedule_of(batch: Batch) -> ScheduleSpec | None:
    """The batch's schedule if it has an enabled, readable one."""
    if not batch.schedule:
        return None
    try:
        spec = ScheduleSpec.model_validate(batch.schedule)
    except ValidationError:
        log.warning("batch %s: stored schedule no longer valid, not scheduled", batch.id)
        return None
    return spec if spec.enabled else None


def first_fire(batch_schedule: ScheduleSpec | None, now: datetime) -> datetime | None:
    """`next_fire_time` for a schedule that was just created, edited or enabled."""
    return None if batch_schedule is None or not batch_schedule.enabled else next_fire(batch_schedule, now)


async def fire_due(session: AsyncSession, now: datetime, topics: Topics, limit: int = 100) -> list[Fire]:
    """Fire every due schedule once (caller commits); returns what each fire did."""
    due = (await session.scalars(
        select(Batch).where(Batch.next_fire_time <= now).order_by(Batch.next_fire_time)
        .limit(limit).with_for_update(skip_locked=True)
    )).all()
    fires: list[Fire] = []
    for batch in due:
        spec = schedule_of(batch)
        try:
            following = None if spec is None else next_fire(spec, now)
        except (CroniterError, ValueError) as error:  # validated at creation; a library change must not stop the rest
            log.warning("batch %s: schedule has no next fire time, not scheduled: %r", batch.id, error)
            spec = following = None
        await session.execute(  # keeps updated_at: it tells when the configuration changed, not the schedule
            update(Batch).where(Batch.id == batch.id)
            .values(next_fire_time=following, updated_at=Batch.updated_at)
        )
        if spec is not None:
            fires.append(await _fire(session, batch, latest_fire(spec, now), topics))
    return fires


async def _fire(session: AsyncSession, batch: Batch, fire_time: datetime, topics: Topics) -> Fire:
    request_id = fire_request_id(batch.id, fire_time)
    running = await active_run(session, batch.id)
    if running is not None:
        add_event(session, topics.events, BatchSyncSkipped(
            correlation_id=request_id, batch_id=batch.id, run_id=running.id, producer=PRODUCER,
            fire_time=fire_time, request_id=request_id,
        ))
        log.info("batch %s: fire at %s skipped, run %s still active", batch.id, fire_time, running.id)
        return Fire(batch.id, fire_time, request_id, FireOutcome.SKIPPED)
    if await session.get(Run, run_id_for(request_id)) is not None:
        return Fire(batch.id, fire_time, request_id, FireOutcome.ALREADY_FIRED)
    session.add(new_run(
        batch, request_id=request_id, correlation_id=request_id, reply_to=None, trigger=Trigger.SCHEDULE.value,
        requested_by=REQUESTED_BY, owner=None, lease_until=lease_from_now(PENDING_GRACE_SECONDS),
    ))
    add_event(session, topics.requested, BatchSyncRequested(
        correlation_id=request_id, batch_id=batch.id, producer=PRODUCER, request_id=request_id,
        requested_by=REQUESTED_BY, trigger=Trigger.SCHEDULE, reply_to=None,
    ))
    log.info("batch %s: fired %s", batch.id, request_id)
    return Fire(batch.id, fire_time, request_id, FireOutcome.FIRED)

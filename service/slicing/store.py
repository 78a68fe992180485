"""Slices in the state store, one statement per step, fenced like runs (service/runs/lifecycle.py).

A slice is leased like a run: the worker named in `owner` renews `lease_until` (on the database's clock); an
expired lease lets any worker claim the slice and resume it from its checkpoint in the target. A slice is only
claimed while its run is RUNNING and not asked to cancel, so a cancel stops every slice not yet started.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.events import BatchSliceCompleted, BatchSyncRequested, ErrorCode, Trigger
from schemas.status import ACTIVE, TERMINAL, RunStatus, sql_list
from schemas.topics import Topics
from service.db.models import Run, RunSlice
from service.runs.lifecycle import PRODUCER, lease_from_now, relaxed
from service.runs.outbox import add_event
from service.slicing.ranges import SliceRange

SliceId = tuple[uuid.UUID, int]
"""(run id, slice number)."""
_SLICE_EVENTS = uuid.UUID("0c9d5a8e-7f55-4c8e-9a57-3e1f0b7d2c41")


def request_id_of(run_id: uuid.UUID, number: int) -> str:
    return f"slice:{run_id}:{number}"


def completed_event_id(run_id: uuid.UUID, number: int) -> uuid.UUID:
    """A slice ends once per run, so its event's id follows from the two: a re-sent copy is the same event."""
    return uuid.uuid5(_SLICE_EVENTS, f"{run_id}:{number}")


async def store_plan(session: AsyncSession, run: Run, ranges: Sequence[SliceRange], topics: Topics,
                     worker_id: str, grace: float) -> bool:
    """Store the plan of `run` (still ours and not planned yet) and queue a request per slice; False when the run
    is no longer ours or was planned by another execution meanwhile.

    A slice not claimed within `grace` seconds (its request sits behind busy slots on the worker that read it, or
    on a partition nobody reads yet) is claimed by the first worker with a free slot (`claim_orphans`): slices
    go to whoever has room, whatever the partition their request landed on."""
    planned = (await session.execute(
        update(Run).where(Run.id == run.id, Run.owner == worker_id, Run.slices.is_(None))
        .values(slices=len(ranges)).returning(Run.id)
    )).first()
    if planned is None:
        return False
    for number, where in enumerate(ranges):
        session.add(RunSlice(run_id=run.id, slice=number, range=where.as_json(), status=RunStatus.PENDING,
                             lease_until=lease_from_now(grace)))
    await session.flush()
    queue_requests(session, run, range(len(ranges)), topics)
    return True


async def carry_plan(session: AsyncSession, run: Run, previous: uuid.UUID, topics: Topics, worker_id: str,
                     grace: float) -> bool:
    """A retry keeps the plan of the run it resumes: slices that succeeded there are carried over (never run
    again; their rows are in the target, or staged under the chain's keys), the others are requested again and
    resume from their checkpoints. False when `previous` was not split (plan afresh) or the run is not ours."""
    slices = (await session.scalars(select(RunSlice).where(RunSlice.run_id == previous)
                                    .order_by(RunSlice.slice))).all()
    if not slices:
        return False
    planned = (await session.execute(
        update(Run).where(Run.id == run.id, Run.owner == worker_id, Run.slices.is_(None))
        .values(slices=len(slices)).returning(Run.id)
    )).first()
    if planned is None:
        return False
    again = []
    for old in slices:
        done = old.status == RunStatus.SUCCESS
        session.add(RunSlice(
            run_id=run.id, slice=old.slice, range=old.range,
            status=RunStatus.SUCCESS if done else RunStatus.PENDING,
            lease_until=None if done else lease_from_now(grace),
            worker_id=old.worker_id if done else None,
            records_read=old.records_read if done else 0, records_written=old.records_written if done else 0,
            records_rejected=old.records_rejected if done else 0, chunks=old.chunks if done else 0,
            carried_from_run_id=(old.carried_from_run_id or previous) if done else None,
            started_at=old.started_at if done else None, finished_at=old.finished_at if done else None,
        ))
        if not done:
            again.append(old.slice)
    await session.flush()
    queue_requests(session, run, again, topics)
    return True


def queue_requests(session: AsyncSession, run: Run, numbers: Sequence[int], topics: Topics) -> None:
    """One request per slice, keyed by run and slice so that the group spreads them over its partitions."""
    for number in numbers:
        add_event(session, topics.requested, BatchSyncRequested(
            correlation_id=run.correlation_id, batch_id=run.batch_id, run_id=run.id, producer=PRODUCER,
            request_id=request_id_of(run.id, number), requested_by=run.requested_by, trigger=Trigger(run.trigger),
            slice=number,
        ), key=f"{run.batch_id}:{run.id}:{number}")


async def claim(session: AsyncSession, run_id: uuid.UUID, number: int, worker_id: str,
                lease_seconds: float) -> RunSlice | None:
    """Take a slice to run it: a PENDING one, one whose lease expired, or one already ours (an orphan this worker
    took over); only while its run is RUNNING and not asked to cancel. None: someone else runs it, or it ended."""
    await relaxed(session)
    live_run = select(Run.id).where(Run.id == run_id, Run.status == RunStatus.RUNNING,
                                    Run.cancel_requested_by.is_(None)).exists()
    return (await session.execute(
        update(RunSlice)
        .where(RunSlice.run_id == run_id, RunSlice.slice == number, RunSlice.status.in_(sorted(ACTIVE)),
               (RunSlice.status == RunStatus.PENDING) | (RunSlice.owner == worker_id)
               | (RunSlice.lease_until < func.now()), live_run)
        .values(status=RunStatus.RUNNING, owner=worker_id, worker_id=worker_id, attempts=RunSlice.attempts + 1,
                lease_until=lease_from_now(lease_seconds), started_at=func.coalesce(RunSlice.started_at, func.now()))
        .returning(RunSlice)
        .execution_options(populate_existing=True)
    )).scalar_one_or_none()


async def renew(session: AsyncSession, worker_id: str, ids: Sequence[SliceId],
                lease_seconds: float) -> dict[SliceId, str | None]:
    """Extend our slices' leases; slice → who asked to cancel its run (None if nobody), for slices still ours."""
    if not ids:
        return {}
    await relaxed(session)
    rows = await session.execute(
        update(RunSlice)
        .where(tuple_(RunSlice.run_id, RunSlice.slice).in_(list(ids)),
               RunSlice.owner == worker_id, RunSlice.status == RunStatus.RUNNING, Run.id == RunSlice.run_id)
        .values(lease_until=lease_from_now(lease_seconds))
        .returning(RunSlice.run_id, RunSlice.slice, Run.cancel_requested_by)
    )
    return {(row.run_id, row.slice): row.cancel_requested_by for row in rows}


async def release(session: AsyncSession, worker_id: str, ids: Sequence[SliceId]) -> None:
    """On a clean shutdown: expire our slices' leases at once so another worker resumes them without waiting."""
    for run_id, number in ids:
        await session.execute(
            update(RunSlice).where(RunSlice.run_id == run_id, RunSlice.slice == number, RunSlice.owner == worker_id,
                                   RunSlice.status == RunStatus.RUNNING)
            .values(lease_until=lease_from_now(-1))
        )


async def record_progress(session: AsyncSession, run_id: uuid.UUID, number: int, worker_id: str, *, chunks: int,
                          records_read: int, records_written: int, records_rejected: int) -> str | None | bool:
    """Mirror a slice's counts; who asked to cancel its run (None: nobody), or False when it is no longer ours."""
    await relaxed(session)
    row = (await session.execute(
        update(RunSlice)
        .where(RunSlice.run_id == run_id, RunSlice.slice == number, RunSlice.owner == worker_id,
               RunSlice.status == RunStatus.RUNNING, Run.id == RunSlice.run_id)
        .values(chunks=chunks, records_read=records_read, records_written=records_written,
                records_rejected=records_rejected)
        .returning(Run.cancel_requested_by)
    )).first()
    return False if row is None else row.cancel_requested_by


@dataclass(frozen=True)
class SliceOutcome:
    status: RunStatus
    records_read: int
    records_written: int
    records_rejected: int
    chunks: int
    message: str
    error_code: ErrorCode | None = None


async def complete(session: AsyncSession, run: Run, number: int, worker_id: str, outcome: SliceOutcome,
                   topics: Topics) -> bool:
    """End a slice we own and queue its `BatchSliceCompleted`; False when it is no longer ours."""
    done = (await session.execute(
        update(RunSlice)
        .where(RunSlice.run_id == run.id, RunSlice.slice == number, RunSlice.owner == worker_id,
               RunSlice.status == RunStatus.RUNNING)
        .values(status=outcome.status, owner=None, lease_until=None, finished_at=func.now(),
                records_read=outcome.records_read, records_written=outcome.records_written,
                records_rejected=outcome.records_rejected, chunks=outcome.chunks, message=outcome.message,
                error_code=outcome.error_code.value if outcome.error_code else None)
        .returning(RunSlice)
    )).scalar_one_or_none()
    if done is None:
        return False
    add_event(session, topics.events, completed_event(run, done))
    return True


def completed_event(run: Run, row: RunSlice) -> BatchSliceCompleted:
    """The `BatchSliceCompleted` of a slice row that has just ended (as the statement that ended it returned it)."""
    duration = 0
    if row.started_at is not None and row.finished_at is not None:
        duration = int((row.finished_at - row.started_at) / timedelta(milliseconds=1))
    return BatchSliceCompleted(
        event_id=completed_event_id(run.id, row.slice), correlation_id=run.correlation_id, batch_id=run.batch_id,
        run_id=run.id, producer=PRODUCER, slice=row.slice, range=row.range, worker_id=row.worker_id,
        success=row.status == RunStatus.SUCCESS, records_synced=row.records_written, records_read=row.records_read,
        records_rejected=row.records_rejected, message=row.message or "",
        error_code=ErrorCode(row.error_code) if row.error_code else None, duration_ms=max(duration, 0),
    )


async def cancel_pending(session: AsyncSession, run: Run, message: str, topics: Topics) -> int:
    """A cancelled run's slices that never started end CANCELLED (their requests are then ignored)."""
    rows = (await session.scalars(
        update(RunSlice).where(RunSlice.run_id == run.id, RunSlice.status == RunStatus.PENDING)
        .values(status=RunStatus.CANCELLED, owner=None, lease_until=None, finished_at=func.now(), message=message,
                error_code=ErrorCode.CANCELLED.value)
        .returning(RunSlice)
    )).all()
    for row in rows:
        add_event(session, topics.events, completed_event(run, row))
    return len(rows)


async def claim_orphans(session: AsyncSession, worker_id: str, lease_seconds: float,
                        limit: int) -> list[tuple[uuid.UUID, int, int]]:
    """Take over slices of RUNNING runs whose lease expired (their worker died, or their request was never read):
    (run id, slice, batch id) of each, now ours to `claim`."""
    rows = (await session.execute(text(
        f"SELECT s.run_id, s.slice, r.batch_id FROM run_slices s JOIN runs r ON r.id = s.run_id "
        f"WHERE s.status IN ({sql_list(ACTIVE)}) AND s.lease_until < now() AND r.status = 'RUNNING' "
        "AND r.cancel_requested_by IS NULL ORDER BY s.lease_until FOR UPDATE OF s SKIP LOCKED LIMIT :limit"
    ), {"limit": limit})).all()
    for run_id, number, _ in rows:
        await session.execute(
            update(RunSlice).where(RunSlice.run_id == run_id, RunSlice.slice == number)
            .values(owner=worker_id, lease_until=lease_from_now(lease_seconds))
        )
    return [(row[0], row[1], row[2]) for row in rows]


@dataclass(frozen=True)
class Tally:
    """Where a split run's slices stand: how many in each state, and the sums of their counts."""

    total: int
    by_status: dict[str, int]
    records_read: int
    records_written: int
    records_rejected: int
    chunks: int

    @property
    def ended(self) -> bool:
        return sum(self.by_status.get(s, 0) for s in TERMINAL) == self.total

    @property
    def succeeded(self) -> bool:
        return self.by_status.get(RunStatus.SUCCESS, 0) == self.total


async def tally(session: AsyncSession, run_id: uuid.UUID) -> Tally:
    rows = (await session.execute(
        select(RunSlice.status, func.count(), func.sum(RunSlice.records_read), func.sum(RunSlice.records_written),
               func.sum(RunSlice.records_rejected), func.sum(RunSlice.chunks))
        .where(RunSlice.run_id == run_id).group_by(RunSlice.status)
    )).all()
    by_status = {row[0]: int(row[1]) for row in rows}
    return Tally(total=sum(by_status.values()), by_status=by_status,
                 records_read=sum(int(r[2] or 0) for r in rows), records_written=sum(int(r[3] or 0) for r in rows),
                 records_rejected=sum(int(r[4] or 0) for r in rows), chunks=sum(int(r[5] or 0) for r in rows))


async def first_failure(session: AsyncSession, run_id: uuid.UUID) -> RunSlice | None:
    return await session.scalar(
        select(RunSlice).where(RunSlice.run_id == run_id, RunSlice.status == RunStatus.FAILED)
        .order_by(RunSlice.slice).limit(1)
    )


async def slices_of(session: AsyncSession, run_id: uuid.UUID) -> list[RunSlice]:
    return list((await session.scalars(select(RunSlice).where(RunSlice.run_id == run_id)
                                       .order_by(RunSlice.slice))).all())

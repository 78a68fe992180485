"""The read side of runs: a batch's history (the projection) and one run's live progress."""

from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import HistoryRow, RunListRow, RunOut, SliceOut
from schemas.envelope import Page
from schemas.events import RunPhase
from schemas.messages import RUN_NOT_FOUND
from schemas.status import RunStatus
from service.catalog.batches import load as load_batch
from service.catalog.errors import NotFound
from service.catalog.paging import PageRequest, fetch_page
from service.db.models import Batch, Run, RunHistory, RunSlice
from service.notify.deliveries import for_run as notifications_of


def history_row(row: RunHistory) -> HistoryRow:
    return HistoryRow(
        run_id=row.run_id,
        trigger=row.trigger or "",
        requested_by=row.requested_by or "",
        status=RunStatus(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        records_synced=row.records_synced,
        message=row.message,
        resumed_from_run_id=row.resumed_from_run_id,
        retried_by_run_id=row.retried_by_run_id,
        retry_attempt=row.retry_attempt,
        skipped_fires=row.skipped_fires,
        last_skipped_fire_at=row.last_skipped_fire_at,
        records_rejected=row.records_rejected,
        source_count=row.source_count,
        target_count=row.target_count,
        reconciled=row.reconciled,
    )


async def history(session: AsyncSession, batch_id: int, page: PageRequest) -> Page[HistoryRow]:
    """Newest first: by start time, falling back to the last event for runs the projector saw unstarted."""
    await load_batch(session, batch_id)
    newest = func.coalesce(RunHistory.started_at, RunHistory.last_event_at, RunHistory.finished_at)
    query = (select(RunHistory).where(RunHistory.batch_id == batch_id)
             .order_by(newest.desc().nulls_first(), RunHistory.run_id))
    total, rows = await fetch_page(session, query, page)
    return Page[HistoryRow](total=total, rows=[history_row(row) for row in rows])


async def across_batches(session: AsyncSession, page: PageRequest,
                         status: RunStatus | None = None) -> Page[RunListRow]:
    """Runs of every batch, newest first, optionally of one status (the console's failed runs); a run whose
    batch was deleted since keeps its row, without a name."""
    newest = func.coalesce(RunHistory.finished_at, RunHistory.last_event_at, RunHistory.started_at)
    query = select(RunHistory).order_by(newest.desc().nulls_last(), RunHistory.run_id)
    if status is not None:
        query = query.where(RunHistory.status == status.value)
    total, rows = await fetch_page(session, query, page)
    ids = {row.batch_id for row in rows}
    names = {row.id: row.name for row in await session.execute(select(Batch.id, Batch.name).where(Batch.id.in_(ids)))}
    return Page[RunListRow](total=total, rows=[
        RunListRow(**history_row(row).model_dump(), batch_id=row.batch_id, batch_name=names.get(row.batch_id),
                   error_code=row.error_code)
        for row in rows
    ])


def run_out(row: Run) -> RunOut:
    return RunOut(
        run_id=row.id,
        batch_id=row.batch_id,
        status=RunStatus(row.status),
        trigger=row.trigger,
        requested_by=row.requested_by,
        records_read=row.records_read,
        records_written=row.records_written,
        chunks=row.chunks,
        total_estimate=row.total_estimate,
        started_at=row.started_at,
        finished_at=row.finished_at,
        message=row.message,
        error_code=row.error_code,
        resumed_from_run_id=row.resumed_from_run_id,
        config_hash=row.config_hash,
        phase=run_phase(row),
        records_rejected=row.records_rejected,
        source_count=row.source_count,
        target_count=row.target_count,
        reconciled=row.reconciled,
    )


def run_phase(row: Run) -> RunPhase | None:
    """What a running run does now: `publishing` once it began to publish its rows, else `writing` after its
    first chunk; null before that and once it ended."""
    if row.status != RunStatus.RUNNING:
        return None
    if row.finishing_at is not None:
        return RunPhase.PUBLISHING
    return RunPhase.WRITING if row.chunks else None


async def run_detail(session: AsyncSession, batch_id: int, run_id: UUID) -> RunOut:
    row = await session.get(Run, run_id)
    if row is None or row.batch_id != batch_id:
        raise NotFound(RUN_NOT_FOUND)
    detail: dict[str, object] = {"notifications": await notifications_of(session, run_id)}
    if row.slices is not None:
        parts = await session.scalars(select(RunSlice).where(RunSlice.run_id == run_id).order_by(RunSlice.slice))
        detail["slices"] = [slice_out(part) for part in parts]
    return run_out(row).model_copy(update=detail)


def slice_out(row: RunSlice) -> SliceOut:
    return SliceOut(
        slice=row.slice, range=row.range, status=RunStatus(row.status), worker_id=row.worker_id,
        attempts=row.attempts, records_read=row.records_read, records_written=row.records_written,
        records_rejected=row.records_rejected, chunks=row.chunks, message=row.message, error_code=row.error_code,
        carried_from_run_id=row.carried_from_run_id, started_at=row.started_at, finished_at=row.finished_at,
    )

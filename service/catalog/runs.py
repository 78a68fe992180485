"""The read side of runs: a batch's history (the projection) and one run's live progress."""

from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import HistoryRow, RunOut
from schemas.envelope import Page
from schemas.messages import RUN_NOT_FOUND
from schemas.status import RunStatus
from service.catalog.batches import load as load_batch
from service.catalog.errors import NotFound
from service.catalog.paging import PageRequest, fetch_page
from service.db.models import Run, RunHistory


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
    )


async def history(session: AsyncSession, batch_id: int, page: PageRequest) -> Page[HistoryRow]:
    """Newest first: by start time, falling back to the last event for runs the projector saw unstarted."""
    await load_batch(session, batch_id)
    newest = func.coalesce(RunHistory.started_at, RunHistory.last_event_at, RunHistory.finished_at)
    query = (select(RunHistory).where(RunHistory.batch_id == batch_id)
             .order_by(newest.desc().nulls_first(), RunHistory.run_id))
    total, rows = await fetch_page(session, query, page)
    return Page[HistoryRow](total=total, rows=[history_row(row) for row in rows])


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
    )


async def run_detail(session: AsyncSession, batch_id: int, run_id: UUID) -> RunOut:
    row = await session.get(Run, run_id)
    if row is None or row.batch_id != batch_id:
        raise NotFound(RUN_NOT_FOUND)
    return run_out(row)

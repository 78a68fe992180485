"""Run statistics from the history projection, per batch and over all batches.

`successRate` is successful runs over all recorded runs (0 when there are none), a fraction rounded
to four places; durations average the runs that finished.
"""

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import BatchStatistics, OverallStatistics, WriteMode
from schemas.status import RunStatus
from service.catalog.batches import load as load_batch
from service.db.models import Batch, RunHistory


def _rate(success: int, total: int) -> float:
    return round(success / total, 4) if total else 0.0


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


async def _figures(session: AsyncSession, where: ColumnElement[bool] | None) -> dict[str, Any]:
    finished = RunHistory.finished_at.is_not(None)
    query = select(
        func.count().label("total"),
        func.count().filter(RunHistory.status == RunStatus.SUCCESS).label("success"),
        func.count().filter(RunHistory.status == RunStatus.FAILED).label("failed"),
        func.coalesce(func.sum(RunHistory.records_synced), 0).label("records"),
        func.coalesce(func.sum(RunHistory.records_rejected), 0).label("rejected"),
        func.max(RunHistory.finished_at).label("last_sync"),
        func.max(RunHistory.finished_at).filter(RunHistory.status == RunStatus.SUCCESS).label("last_success"),
        func.avg(RunHistory.duration_ms).filter(finished).label("avg_ms"),
    )
    last = select(RunHistory.records_synced).where(finished).order_by(RunHistory.finished_at.desc()).limit(1)
    if where is not None:
        query, last = query.where(where), last.where(where)
    row = (await session.execute(query)).one()
    return {
        "total_runs": row.total,
        "success_runs": row.success,
        "failed_runs": row.failed,
        "success_rate": _rate(row.success, row.total),
        "total_records_synced": int(row.records),
        "last_records_synced": await session.scalar(last),
        "last_sync_time": row.last_sync,
        "last_success_time": row.last_success,
        "avg_duration_ms": _ms(row.avg_ms),
        "total_records_rejected": int(row.rejected),
    }


async def for_batch(session: AsyncSession, batch_id: int) -> BatchStatistics:
    await load_batch(session, batch_id)
    return BatchStatistics(batch_id=batch_id, **await _figures(session, RunHistory.batch_id == batch_id))


async def _counts(session: AsyncSession, column: Any) -> dict[str, int]:
    rows = await session.execute(select(column, func.count()).group_by(column).order_by(column))
    return {str(key): int(count) for key, count in rows.all()}


async def overall(session: AsyncSession) -> OverallStatistics:
    figures = await _figures(session, None)
    figures.pop("last_records_synced")
    mode = func.coalesce(Batch.target["mode"].astext, WriteMode.APPEND.value)
    return OverallStatistics(
        total_batches=await session.scalar(select(func.count()).select_from(Batch)) or 0,
        batches_by_status=await _counts(session, Batch.status),
        batches_by_mode=await _counts(session, mode),
        **figures,
    )

"""Batches: create, read, list with filters, update (bumping `config_version`), delete.

Source, target and mapping are stored as their camelCase wire form, so the worker reads them back
with the same pydantic models the API validated them with.
"""

from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import (
    BatchIn,
    BatchOut,
    ErrorLimitSpec,
    MappingEntry,
    NotifySpec,
    RetryPolicySpec,
    ScheduleSpec,
    SourceSpec,
    SplitSpec,
    TargetSpec,
)
from schemas.envelope import Page
from schemas.messages import BATCH_NOT_FOUND, BATCH_RUNNING, bad_request
from schemas.status import ACTIVE, BatchStatus
from service.catalog.errors import Conflict, Invalid, NotFound, missing_connection
from service.catalog.paging import PageRequest, fetch_page
from service.connectors import registry
from service.db.models import Batch, Connection, Run
from service.notify.deliveries import masked
from service.scheduling.schedules import first_fire


def to_out(row: Batch) -> BatchOut:
    return BatchOut(
        id=row.id,
        name=row.name,
        source_connection_id=row.source_connection_id,
        source=SourceSpec.model_validate(row.source),
        target_connection_id=row.target_connection_id,
        target=TargetSpec.model_validate(row.target),
        mapping=None if row.mapping is None else [MappingEntry.model_validate(m) for m in row.mapping],
        chunk_size=row.chunk_size,
        schedule=None if row.schedule is None else ScheduleSpec.model_validate(row.schedule),
        retry_policy=None if row.retry_policy is None else RetryPolicySpec.model_validate(row.retry_policy),
        notify=None if row.notify is None else _masked_notify(row.notify),
        error_limit=None if row.error_limit is None else ErrorLimitSpec.model_validate(row.error_limit),
        split=None if row.split is None else SplitSpec.model_validate(row.split),
        next_fire_time=row.next_fire_time,
        status=BatchStatus(row.status),
        last_sync_time=row.last_sync_time,
        last_records_synced=row.last_records_synced,
        last_run_id=row.last_run_id,
        last_error=row.last_error,
        config_version=row.config_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def load(session: AsyncSession, batch_id: int) -> Batch:
    row = await session.get(Batch, batch_id)
    if row is None:
        raise NotFound(BATCH_NOT_FOUND)
    return row


async def _check_connections(session: AsyncSession, body: BatchIn) -> None:
    """Both connections exist, and their kinds can serve as this source and target in this write mode."""
    source = await session.get(Connection, body.source_connection_id)
    target = await session.get(Connection, body.target_connection_id)
    for connection_id, row in ((body.source_connection_id, source), (body.target_connection_id, target)):
        if row is None:
            raise missing_connection(connection_id)
    assert source is not None and target is not None
    problem = registry.check_batch(source.type, target.type, body.target.mode.value,
                                   cursor=body.source.cursor_column is not None, split=body.split is not None)
    if problem is not None:
        raise Invalid(bad_request(problem))


def _apply(row: Batch, body: BatchIn) -> None:
    row.name = body.name
    row.source_connection_id = body.source_connection_id
    row.source = body.source.model_dump(mode="json", by_alias=True, exclude_none=True)
    row.target_connection_id = body.target_connection_id
    row.target = body.target.model_dump(mode="json", by_alias=True, exclude_none=True)
    row.mapping = (None if body.mapping is None else
                   [m.model_dump(mode="json", by_alias=True, exclude_defaults=True) for m in body.mapping])
    row.chunk_size = body.chunk_size
    row.retry_policy = _wire(body.retry_policy)
    row.error_limit = _wire(body.error_limit)
    row.split = _wire(body.split)
    notify = _wire(body.notify)
    if notify is not None and row.notify is not None and notify["url"] == masked(row.notify["url"]):
        notify["url"] = row.notify["url"]  # the masked address read back and sent again: unchanged
    row.notify = notify


def _masked_notify(stored: dict[str, Any]) -> NotifySpec:
    """A notify address is shown without its path and query: a chat webhook's path or key is its secret."""
    spec = NotifySpec.model_validate(stored)
    return spec.model_copy(update={"url": masked(spec.url)})


def _wire(spec: ScheduleSpec | RetryPolicySpec | NotifySpec | ErrorLimitSpec | SplitSpec | None
          ) -> dict[str, Any] | None:
    return None if spec is None else spec.model_dump(mode="json", by_alias=True)


async def _schedule(session: AsyncSession, row: Batch, body: BatchIn) -> None:
    """Store the schedule; a new, edited or re-enabled one fires next from now (on the state store's clock),
    an unchanged one keeps its next fire, and a removed or disabled one none."""
    schedule = _wire(body.schedule)
    if schedule == row.schedule and (row.next_fire_time is not None or body.schedule is None):
        return
    row.schedule = schedule
    now = await session.scalar(select(func.now()))
    row.next_fire_time = first_fire(body.schedule, now) if now is not None else None


async def _commit(session: AsyncSession, body: BatchIn) -> None:
    """A connection deleted between the check and the commit trips the foreign key: same answer."""
    try:
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        for connection_id in (body.source_connection_id, body.target_connection_id):
            if await session.get(Connection, connection_id) is None:
                raise missing_connection(connection_id) from error
        raise


async def create(session: AsyncSession, body: BatchIn) -> BatchOut:
    await _check_connections(session, body)
    row = Batch()
    _apply(row, body)
    await _schedule(session, row, body)
    session.add(row)
    await _commit(session, body)
    await session.refresh(row)
    return to_out(row)


async def get(session: AsyncSession, batch_id: int) -> BatchOut:
    return to_out(await load(session, batch_id))


async def list_page(session: AsyncSession, page: PageRequest, name: str | None = None,
                    status: str | None = None) -> Page[BatchOut]:
    query = select(Batch).order_by(Batch.id)
    if name:
        query = query.where(Batch.name.contains(name, autoescape=True))
    if status:
        query = query.where(Batch.status == status)
    total, rows = await fetch_page(session, query, page)
    return Page[BatchOut](total=total, rows=[to_out(row) for row in rows])


async def update(session: AsyncSession, batch_id: int, body: BatchIn) -> BatchOut:
    row = await load(session, batch_id)
    await _check_connections(session, body)
    _apply(row, body)
    await _schedule(session, row, body)
    row.config_version = Batch.config_version + 1
    await _commit(session, body)
    await session.refresh(row)
    return to_out(row)


async def delete(session: AsyncSession, batch_id: int) -> None:
    """Refused while a run is pending or running: its worker still needs the configuration."""
    row = await session.get(Batch, batch_id, with_for_update=True)
    if row is None:
        raise NotFound(BATCH_NOT_FOUND)
    active = await session.scalar(select(exists().where(
        Run.batch_id == batch_id, Run.status.in_(sorted(ACTIVE)))))
    if active:
        raise Conflict(BATCH_RUNNING)
    await session.delete(row)
    await session.commit()


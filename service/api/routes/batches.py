"""`/integration/batch`: CRUD, list with filters, statistics. Fixed paths come before `/{id}`."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from schemas.api import BatchIn, BatchOut, BatchStatistics, OverallStatistics
from schemas.envelope import Envelope, Page
from service.api.deps import IdDep, PageDep, SessionDep, require
from service.auth import Principal
from service.catalog import batches, statistics

router = APIRouter(prefix="/integration/batch", tags=["batches"])


@router.post("", response_model=Envelope[BatchOut])
async def create_batch(body: BatchIn, session: SessionDep,
                       _: Principal = Depends(require("integration:batch:add"))) -> Envelope:
    return Envelope(data=await batches.create(session, body))


@router.get("/list", response_model=Envelope[Page[BatchOut]])
async def list_batches(session: SessionDep, page: PageDep,
                       name: Annotated[str | None, Query(max_length=200)] = None,
                       status: Annotated[str | None, Query(max_length=20)] = None,
                       _: Principal = Depends(require("integration:batch:list"))) -> Envelope:
    return Envelope(data=await batches.list_page(session, page, name=name, status=status))


@router.get("/statistics", response_model=Envelope[OverallStatistics])
async def overall_statistics(session: SessionDep,
                             _: Principal = Depends(require("integration:batch:query"))) -> Envelope:
    return Envelope(data=await statistics.overall(session))


@router.get("/{id}", response_model=Envelope[BatchOut])
async def get_batch(id: IdDep, session: SessionDep,
                    _: Principal = Depends(require("integration:batch:query"))) -> Envelope:
    return Envelope(data=await batches.get(session, id))


@router.put("/{id}", response_model=Envelope[BatchOut])
async def update_batch(id: IdDep, body: BatchIn, session: SessionDep,
                       _: Principal = Depends(require("integration:batch:edit"))) -> Envelope:
    return Envelope(data=await batches.update(session, id, body))


@router.delete("/{id}", response_model=Envelope[None])
async def delete_batch(id: IdDep, session: SessionDep,
                       _: Principal = Depends(require("integration:batch:remove"))) -> Envelope:
    await batches.delete(session, id)
    return Envelope()


@router.get("/{id}/statistics", response_model=Envelope[BatchStatistics])
async def batch_statistics(id: IdDep, session: SessionDep,
                           _: Principal = Depends(require("integration:batch:query"))) -> Envelope:
    return Envelope(data=await statistics.for_batch(session, id))

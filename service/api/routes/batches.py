"""`/integration/batch`: CRUD, list with filters, statistics. Fixed paths come before `/{id}`."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from schemas.api import BatchIn, BatchOut, BatchStatistics, OverallStatistics
from schemas.envelope import Envelope, Page
from service.api.deps import IdDep, PageDep, SessionDep, require
from service.catalog import batches, statistics

router = APIRouter(prefix="/integration/batch", tags=["batches"])


@router.post("", response_model=Envelope[BatchOut],
             dependencies=[Depends(require("integration:batch:add"))])
async def create_batch(body: BatchIn, session: SessionDep) -> Envelope[BatchOut]:
    return Envelope(data=await batches.create(session, body))


@router.get("/list", response_model=Envelope[Page[BatchOut]],
            dependencies=[Depends(require("integration:batch:list"))])
async def list_batches(session: SessionDep, page: PageDep,
                       name: Annotated[str | None, Query(max_length=200)] = None,
                       status: Annotated[str | None, Query(max_length=20)] = None) -> Envelope[Page[BatchOut]]:
    return Envelope(data=await batches.list_page(session, page, name=name, status=status))


@router.get("/statistics", response_model=Envelope[OverallStatistics],
            dependencies=[Depends(require("integration:batch:query"))])
async def overall_statistics(session: SessionDep) -> Envelope[OverallStatistics]:
    return Envelope(data=await statistics.overall(session))


@router.get("/{id}", response_model=Envelope[BatchOut],
            dependencies=[Depends(require("integration:batch:query"))])
async def get_batch(id: IdDep, session: SessionDep) -> Envelope[BatchOut]:
    return Envelope(data=await batches.get(session, id))


@router.put("/{id}", response_model=Envelope[BatchOut],
            dependencies=[Depends(require("integration:batch:edit"))])
async def update_batch(id: IdDep, body: BatchIn, session: SessionDep) -> Envelope[BatchOut]:
    return Envelope(data=await batches.update(session, id, body))


@router.delete("/{id}", response_model=Envelope[None],
               dependencies=[Depends(require("integration:batch:remove"))])
async def delete_batch(id: IdDep, session: SessionDep) -> Envelope[None]:
    await batches.delete(session, id)
    return Envelope()


@router.get("/{id}/statistics", response_model=Envelope[BatchStatistics],
            dependencies=[Depends(require("integration:batch:query"))])
async def batch_statistics(id: IdDep, session: SessionDep) -> Envelope[BatchStatistics]:
    return Envelope(data=await statistics.for_batch(session, id))

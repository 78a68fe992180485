"""`/integration/batch`: CRUD, list with filters, statistics, the dry run. Fixed paths come before `/{id}`."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from schemas.api import BatchCheck, BatchIn, BatchOut, BatchStatistics, OverallStatistics
from schemas.envelope import Envelope, Page
from schemas.messages import BATCH_NOT_FOUND, CHECK_PASSED, check_found
from service.api.deps import IdDep, PageDep, SessionDep, StateDep, require
from service.api.openapi import BATCH_EXAMPLES, CHECK_EXAMPLE, PROTECTED, answers
from service.catalog import batches, statistics
from service.connectors.registry import REGISTRY
from service.runs.check import check_batch

router = APIRouter(prefix="/integration/batch", tags=["batches"])

BatchBody = Annotated[BatchIn, Body(openapi_examples=BATCH_EXAMPLES)]


@router.post("", response_model=Envelope[BatchOut], summary="Create a batch",
             description="Stores a batch: a source table or read-only query, a target table and write mode "
                         "(append, overwrite, upsert) and an optional column mapping. Both connections must "
                         "exist. Needs `integration:batch:add`.",
             responses=answers(*PROTECTED, 413),
             dependencies=[Depends(require("integration:batch:add"))])
async def create_batch(body: BatchBody, session: SessionDep) -> Envelope[BatchOut]:
    return Envelope(data=await batches.create(session, body))


@router.get("/list", response_model=Envelope[Page[BatchOut]], summary="List batches",
            description="One page of batches, filtered by a part of the name and by status (a run status or "
                        "`NEVER_RUN`). Needs `integration:batch:list`.",
            responses=answers(*PROTECTED),
            dependencies=[Depends(require("integration:batch:list"))])
async def list_batches(session: SessionDep, page: PageDep,
                       name: Annotated[str | None, Query(max_length=200)] = None,
                       status: Annotated[str | None, Query(max_length=20)] = None) -> Envelope[Page[BatchOut]]:
    return Envelope(data=await batches.list_page(session, page, name=name, status=status))


@router.get("/statistics", response_model=Envelope[OverallStatistics], summary="Statistics of all batches",
            description="Run counts, success rate, records and durations over every batch, with batch counts "
                        "by status and by write mode. Needs `integration:batch:query`.",
            responses=answers(*PROTECTED),
            dependencies=[Depends(require("integration:batch:query"))])
async def overall_statistics(session: SessionDep) -> Envelope[OverallStatistics]:
    return Envelope(data=await statistics.overall(session))


@router.get("/{id}", response_model=Envelope[BatchOut], summary="Get a batch",
            description="A batch's configuration with its status, last sync time, records, run id and error. "
                        "Needs `integration:batch:query`.",
            responses=answers(*PROTECTED, 404, e404=BATCH_NOT_FOUND),
            dependencies=[Depends(require("integration:batch:query"))])
async def get_batch(id: IdDep, session: SessionDep) -> Envelope[BatchOut]:
    return Envelope(data=await batches.get(session, id))


@router.put("/{id}", response_model=Envelope[BatchOut], summary="Edit a batch",
            description="Replaces a batch's configuration with a body like the one that created it. "
                        "Needs `integration:batch:edit`.",
            responses=answers(*PROTECTED, 404, 413, e404=BATCH_NOT_FOUND),
            dependencies=[Depends(require("integration:batch:edit"))])
async def update_batch(id: IdDep, body: BatchBody, session: SessionDep) -> Envelope[BatchOut]:
    return Envelope(data=await batches.update(session, id, body))


@router.delete("/{id}", response_model=Envelope[None], summary="Delete a batch",
               description="Deletes a batch; refused with a 409 while one of its runs is pending or running. "
                           "Needs `integration:batch:remove`.",
               responses=answers(*PROTECTED, 404, 409, e404=BATCH_NOT_FOUND),
               dependencies=[Depends(require("integration:batch:remove"))])
async def delete_batch(id: IdDep, session: SessionDep) -> Envelope[None]:
    await batches.delete(session, id)
    return Envelope()


@router.get("/{id}/statistics", response_model=Envelope[BatchStatistics], summary="Statistics of a batch",
            description="Run counts, success rate, records synced and average duration of one batch. "
                        "Needs `integration:batch:query`.",
            responses=answers(*PROTECTED, 404, e404=BATCH_NOT_FOUND),
            dependencies=[Depends(require("integration:batch:query"))])
async def batch_statistics(id: IdDep, session: SessionDep) -> Envelope[BatchStatistics]:
    return Envelope(data=await statistics.for_batch(session, id))


_CHECK_ANSWERS: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {"example": CHECK_EXAMPLE}}}}
_CHECK_ANSWERS |= answers(*PROTECTED, 404, e404=BATCH_NOT_FOUND)


@router.post("/{id}/check", response_model=Envelope[BatchCheck], summary="Check a batch without running it",
             description="A dry run that writes nothing: connects to both connections with the same access policy "
                         "as a run, checks that the source table or query and the target table exist (a missing "
                         "target the run would create is a note, not a problem), that every mapped column exists "
                         "and converts, and reads a preview of the first 5 rows after the mapping. Always 200 "
                         f"when the batch exists: `data.ok` is false and `message` is `{check_found(1)}` when "
                         "`data.problems` lists something to fix, each with the body field it is about. "
                         "Needs `integration:batch:query`.",
             responses=_CHECK_ANSWERS,
             dependencies=[Depends(require("integration:batch:query"))])
async def check(id: IdDep, session: SessionDep, state: StateDep) -> Envelope[BatchCheck]:
    report = await check_batch(session, id, state.policy, REGISTRY, state.settings.connect_timeout_seconds)
    return Envelope(message=CHECK_PASSED if report.ok else check_found(len(report.problems)), data=report)

"""`/integration/batch/{id}/…`: trigger, retry and cancel runs; read history and one run's progress."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse

from schemas.api import HistoryRow, RunOut, SyncResult
from schemas.envelope import Envelope, Page
from service.api.deps import IdDep, PageDep, SessionDep, StateDep, WaitDep, require
from service.api.replies import cancel_reply, sync_reply
from service.auth import Principal
from service.catalog import runs
from service.runs import requests as run_requests

router = APIRouter(prefix="/integration/batch", tags=["runs"])


@router.post("/{id}/sync", response_model=Envelope[SyncResult])
async def sync_batch(id: IdDep, state: StateDep, wait: WaitDep,
                     user: Annotated[Principal, Depends(require("integration:batch:sync"))]) -> JSONResponse:
    outcome = await run_requests.request_sync(state, id, user.sub, wait)
    return sync_reply(outcome).response()


@router.post("/{id}/retry", response_model=Envelope[SyncResult])
async def retry_batch(id: IdDep, state: StateDep, wait: WaitDep,
                      user: Annotated[Principal, Depends(require("integration:batch:retry"))]) -> JSONResponse:
    outcome = await run_requests.request_retry(state, id, user.sub, wait)
    return sync_reply(outcome).response()


@router.post("/{id}/cancel", response_model=Envelope[dict[str, Any]])
async def cancel_batch(id: IdDep, state: StateDep,
                       user: Annotated[Principal, Depends(require("integration:batch:sync"))]) -> JSONResponse:
    outcome = await run_requests.request_cancel(state, id, user.sub)
    return cancel_reply(outcome).response()


@router.get("/{id}/history", response_model=Envelope[Page[HistoryRow]],
            dependencies=[Depends(require("integration:batch:query"))])
async def batch_history(id: IdDep, session: SessionDep, page: PageDep) -> Envelope[Page[HistoryRow]]:
    return Envelope(data=await runs.history(session, id, page))


@router.get("/{id}/runs/{runId}", response_model=Envelope[RunOut],
            dependencies=[Depends(require("integration:batch:query"))])
async def run_detail(id: IdDep, run_id: Annotated[UUID, Path(alias="runId")],
                     session: SessionDep) -> Envelope[RunOut]:
    return Envelope(data=await runs.run_detail(session, id, run_id))

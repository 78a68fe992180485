"""`/integration/batch/{id}/…`: trigger, retry and cancel runs; read history and one run's progress.
`/integration/run/list`: runs across batches (the console's failed runs)."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse

from schemas.api import HistoryRow, RunListRow, RunOut, SyncAccepted, SyncResult
from schemas.envelope import Envelope, Page
from schemas.messages import (
    BATCH_NOT_FAILED,
    BATCH_NOT_FOUND,
    CANCEL_TOO_LATE,
    NOTHING_TO_CANCEL,
    RUN_NOT_FOUND,
    RUNNING_IN_BACKGROUND,
    sync_failed,
)
from schemas.status import RunStatus
from service.api.deps import IdDep, PageDep, SessionDep, StateDep, WaitDep, require
from service.api.openapi import PROTECTED, answers
from service.api.replies import cancel_reply, sync_reply
from service.auth import Principal
from service.catalog import runs
from service.runs import requests as run_requests

router = APIRouter(prefix="/integration/batch", tags=["runs"])
across = APIRouter(prefix="/integration/run", tags=["runs"])

_ACCEPTED = {202: {"model": Envelope[SyncAccepted],
                   "description": f"Still running when `wait` ran out (`{RUNNING_IN_BACKGROUND}`): poll "
                                  "`/integration/batch/{id}/runs/{runId}`"}}
_SYNC_ANSWERS = _ACCEPTED | answers(*PROTECTED, 404, 409, e404=BATCH_NOT_FOUND)


@router.post("/{id}/sync", response_model=Envelope[SyncResult], summary="Sync a batch",
             description="Starts a run and waits up to `wait` seconds (default `BATCHSYNC_SYNC_WAIT_SECONDS`): "
                         f"200 when it succeeded, 400 `{sync_failed('<reason>')}` when it failed, 202 with the run "
                         "id when it is still running, 409 when a run of the batch is already active. "
                         "Needs `integration:batch:sync`.",
             responses=_SYNC_ANSWERS)
async def sync_batch(id: IdDep, state: StateDep, wait: WaitDep,
                     user: Annotated[Principal, Depends(require("integration:batch:sync"))]) -> JSONResponse:
    outcome = await run_requests.request_sync(state, id, user.sub, wait)
    return sync_reply(outcome).response()


@router.post("/{id}/retry", response_model=Envelope[SyncResult], summary="Retry a failed batch",
             description="Resumes the batch's last failed run from its checkpoint, with the same answers as "
                         f"sync; 400 `{BATCH_NOT_FAILED}` when the last run did not fail. "
                         "Needs `integration:batch:retry`.",
             responses=_SYNC_ANSWERS)
async def retry_batch(id: IdDep, state: StateDep, wait: WaitDep,
                      user: Annotated[Principal, Depends(require("integration:batch:retry"))]) -> JSONResponse:
    outcome = await run_requests.request_retry(state, id, user.sub, wait)
    return sync_reply(outcome).response()


@router.post("/{id}/cancel", response_model=Envelope[dict[str, Any]], summary="Cancel a batch's run",
             description="Asks the active run to stop at the next chunk boundary and answers with its `runId`; "
                         "400 when no run is active; 409 when the run already began to publish what it wrote "
                         "(an overwrite's swap): too late, it ends as it would have. Needs `integration:batch:sync`.",
             responses=answers(*PROTECTED, 404, 409, e400=NOTHING_TO_CANCEL, e404=BATCH_NOT_FOUND,
                               e409=CANCEL_TOO_LATE))
async def cancel_batch(id: IdDep, state: StateDep,
                       user: Annotated[Principal, Depends(require("integration:batch:sync"))]) -> JSONResponse:
    outcome = await run_requests.request_cancel(state, id, user.sub)
    return cancel_reply(outcome).response()


@router.get("/{id}/history", response_model=Envelope[Page[HistoryRow]], summary="A batch's run history",
            description="One page of the batch's runs, newest first: trigger, requester, status, times, records "
                        "and message. Needs `integration:batch:query`.",
            responses=answers(*PROTECTED, 404, e404=BATCH_NOT_FOUND),
            dependencies=[Depends(require("integration:batch:query"))])
async def batch_history(id: IdDep, session: SessionDep, page: PageDep) -> Envelope[Page[HistoryRow]]:
    return Envelope(data=await runs.history(session, id, page))


@router.get("/{id}/runs/{runId}", response_model=Envelope[RunOut], summary="One run's progress",
            description="A run of the batch with live progress: status, records read and written, chunks, "
                        "estimate, times and message. Needs `integration:batch:query`.",
            responses=answers(*PROTECTED, 404, e404=RUN_NOT_FOUND),
            dependencies=[Depends(require("integration:batch:query"))])
async def run_detail(id: IdDep, run_id: Annotated[UUID, Path(alias="runId")],
                     session: SessionDep) -> Envelope[RunOut]:
    return Envelope(data=await runs.run_detail(session, id, run_id))


@across.get("/list", response_model=Envelope[Page[RunListRow]], summary="Runs across all batches",
            description="One page of every batch's runs, newest first, each with its batch's id and name, "
                        "message and error code; `status=FAILED` lists the failures. "
                        "Needs `integration:batch:list`.",
            responses=answers(*PROTECTED),
            dependencies=[Depends(require("integration:batch:list"))])
async def list_runs(session: SessionDep, page: PageDep,
                    status: Annotated[RunStatus | None, Query()] = None) -> Envelope[Page[RunListRow]]:
    return Envelope(data=await runs.across_batches(session, page, status))

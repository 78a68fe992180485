"""Claiming a run in its admission's transaction (one state-store transaction fewer per small sync), against
the real state store: the run is RUNNING and its spec read when the admission commits; when another run of
the batch is RUNNING the claim alone rolls back and the request is still admitted; when the admission does
not commit, nothing claimed is kept."""

import uuid

import pytest
from sqlalchemy import select

from schemas.events import BatchSyncRequested, Trigger
from schemas.status import RunStatus
from service.bootstrap import database
from service.config import Settings
from service.db import driver
from service.db.models import RequestLedger, Run
from service.runs import lifecycle
from service.runs.requests import Admission, admit
from service.runs.snapshot import run_id_for
from tests.support.builders import state_batch


class Recorder:
    """A Claimer that records what the admission handed it (the executor keeps the spec it reads)."""

    def __init__(self, can_start: bool = True, fail: bool = False) -> None:
        self.start, self.fail = can_start, fail
        self.kept: dict[uuid.UUID, Run] = {}
        self.forgotten: list[uuid.UUID] = []

    def can_start(self, batch_id: int) -> bool:
        return self.start

    async def claimed(self, conn, run: Run) -> None:
        self.kept[run.id] = run
        if self.fail:
            raise ConnectionResetError("the state store went away mid-admission")

    def forget(self, run_id: uuid.UUID) -> None:
        self.forgotten.append(run_id)
        self.kept.pop(run_id, None)


@pytest.fixture(scope="module")
async def db(state_dsn):
    async with database(Settings(database_url=state_dsn)) as handle:
        yield handle


def request(batch_id: int) -> BatchSyncRequested:
    return BatchSyncRequested(correlation_id=str(uuid.uuid4()), batch_id=batch_id, producer="test",
                              requested_by="alice", trigger=Trigger.EVENT, reply_to="replies.test")


async def status_of(db, run_id: uuid.UUID) -> tuple[str, str | None, int]:
    async with db.sessions() as session:
        run = await session.get(Run, run_id)
        assert run is not None
        return run.status, run.owner, run.attempts


async def test_a_run_that_can_start_is_claimed_by_its_admission(db):
    event, claimer = request(await state_batch(db.sessions)), Recorder()
    assert await admit(db.sessions, event, "w1", 10, claimer) is Admission.SCHEDULE
    run_id = run_id_for(event.request_id)
    assert list(claimer.kept) == [run_id]
    assert await status_of(db, run_id) == (RunStatus.RUNNING, "w1", 1)


async def test_without_a_free_slot_the_run_stays_pending_for_the_executor(db):
    event, claimer = request(await state_batch(db.sessions)), Recorder(can_start=False)
    assert await admit(db.sessions, event, "w1", 10, claimer) is Admission.SCHEDULE
    assert claimer.kept == {}
    assert await status_of(db, run_id_for(event.request_id)) == (RunStatus.PENDING, "w1", 0)


async def test_a_busy_batch_rolls_back_the_claim_alone(db):
    batch_id = await state_batch(db.sessions)
    first = request(batch_id)
    assert await admit(db.sessions, first, "w1", 10, Recorder()) is Admission.SCHEDULE
    second, claimer = request(batch_id), Recorder()
    assert await admit(db.sessions, second, "w2", 10, claimer) is Admission.SCHEDULE
    assert claimer.kept == {}
    assert await status_of(db, run_id_for(second.request_id)) == (RunStatus.PENDING, "w2", 0)
    async with db.sessions() as session:  # the admission itself committed: the ledger knows the request
        assert await session.scalar(select(RequestLedger.run_id).where(
            RequestLedger.request_id == second.request_id)) == run_id_for(second.request_id)
    with pytest.raises(lifecycle.ClaimBusy):  # and the executor's usual claim still refuses it
        async with driver.transaction(db.sessions) as conn:
            await lifecycle.claim(conn, run_id_for(second.request_id), "w2", 10)


async def test_an_admission_that_does_not_commit_keeps_nothing_claimed(db):
    event, claimer = request(await state_batch(db.sessions)), Recorder(fail=True)
    with pytest.raises(ConnectionResetError):
        await admit(db.sessions, event, "w1", 10, claimer)
    run_id = run_id_for(event.request_id)
    assert claimer.forgotten == [run_id] and claimer.kept == {}
    async with db.sessions() as session:
        assert await session.get(Run, run_id) is None

"""Leases are judged on the state store's clock, never the worker's (issue 11: a worker 20 s behind let a
live run be taken over; one 60 s ahead delayed the takeover of a dead run by 79 s)."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import BatchSyncRequested, Trigger
from service.bootstrap import database
from service.config import Settings
from service.db import driver
from service.runs import lifecycle, requests
from service.runs.requests import Admission, admit_request
from service.runs.snapshot import run_id_for
from tests.support.builders import state_batch


@pytest.fixture(scope="module")
async def db(state_dsn):
    async with database(Settings(database_url=state_dsn)) as handle:
        yield handle


def skew_worker_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every clock read of the run lifecycle on the worker's side is `seconds` off."""

    class Skewed(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return datetime.now(tz or UTC) + timedelta(seconds=seconds)

    monkeypatch.setattr(lifecycle, "datetime", Skewed)
    monkeypatch.setattr(requests, "datetime", Skewed, raising=False)
    monkeypatch.setattr(lifecycle, "utcnow", lambda: Skewed.now(UTC))
    monkeypatch.setattr(requests, "utcnow", lambda: Skewed.now(UTC), raising=False)


async def start_run(db, worker: str, lease_seconds: float) -> tuple[BatchSyncRequested, uuid.UUID]:
    batch_id = await state_batch(db.sessions)
    event = BatchSyncRequested(correlation_id=str(uuid.uuid4()), batch_id=batch_id, producer="test",
                               request_id="", requested_by="alice", trigger=Trigger.EVENT, reply_to=None)
    async with driver.transaction(db.sessions) as conn:
        assert await admit_request(conn, event, worker, lease_seconds) is Admission.SCHEDULE
    run_id = run_id_for(event.request_id)
    async with driver.transaction(db.sessions) as conn:
        assert await lifecycle.claim(conn, run_id, worker, lease_seconds) is not None
    return event, run_id


async def orphans_for(db, worker: str) -> list[uuid.UUID]:
    async with db.sessions.begin() as session:
        return [run.id for run in await lifecycle.claim_orphans(session, worker, 10, 1000)]


async def test_a_worker_whose_clock_is_behind_keeps_its_live_run(db, monkeypatch):
    skew_worker_clock(monkeypatch, -20)
    event, run_id = await start_run(db, "slow-clock", lease_seconds=10)
    assert run_id not in await orphans_for(db, "other")
    async with db.sessions.begin() as session:
        assert await lifecycle.renew_leases(session, "slow-clock", [run_id], 10) == {run_id: None}
    assert run_id not in await orphans_for(db, "other")
    async with driver.transaction(db.sessions) as conn:  # a redelivered request does not take the live run either
        assert await admit_request(conn, event, "other", 10) is Admission.IGNORED


async def test_a_dead_worker_whose_clock_was_ahead_is_taken_over_when_its_lease_ends(db, monkeypatch):
    skew_worker_clock(monkeypatch, +60)
    _, run_id = await start_run(db, "fast-clock", lease_seconds=1)
    assert run_id not in await orphans_for(db, "other")
    await asyncio.sleep(1.5)
    assert run_id in await orphans_for(db, "other")


async def test_a_redelivered_request_takes_over_once_the_lease_ends_on_the_database_clock(db, monkeypatch):
    skew_worker_clock(monkeypatch, +60)
    event, run_id = await start_run(db, "fast-clock", lease_seconds=1)
    await asyncio.sleep(1.5)
    async with driver.transaction(db.sessions) as conn:
        assert await admit_request(conn, event, "other", 10) is Admission.SCHEDULE

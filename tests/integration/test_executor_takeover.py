"""A worker that queued a run of a batch whose running run was orphaned (its worker died) must let the
orphan resume first, not hold the batch while waiting for it: both runs finish."""

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from schemas.events import BatchSyncRequested, Trigger
from service.bootstrap import database
from service.config import Settings
from service.connectors.registry import REGISTRY
from service.db import driver
from service.db.models import Run
from service.runs import lifecycle
from service.runs.executor import RunExecutor
from service.runs.requests import Admission, admit_request
from service.runs.snapshot import run_id_for
from service.sync.model import RunResult
from tests.support.builders import state_batch


class Notifier:
    def notify(self) -> None:
        pass


async def engine_stand_in(spec, observer, **_):  # the engine is not under test here
    await observer.on_start(0, None)
    return RunResult(records_read=0, records_written=0, chunks=0, resumed_from_chunk=0)


@pytest.fixture(scope="module")
async def db(state_dsn):
    async with database(Settings(database_url=state_dsn)) as handle:
        yield handle


async def admitted(db, batch_id: int, worker: str) -> uuid.UUID:
    event = BatchSyncRequested(correlation_id=str(uuid.uuid4()), batch_id=batch_id, producer="test",
                               requested_by="t", trigger=Trigger.EVENT)
    async with driver.transaction(db.sessions) as conn:
        assert await admit_request(conn, event, worker, 30) is Admission.SCHEDULE
    return run_id_for(event.request_id)


async def test_a_queued_run_lets_the_orphaned_running_run_of_its_batch_finish_first(db, state_dsn):
    batch_id = await state_batch(db.sessions)
    orphan = await admitted(db, batch_id, "dead-worker")
    async with driver.transaction(db.sessions) as conn:
        assert await lifecycle.claim(conn, orphan, "dead-worker", 30) is not None
    async with db.sessions.begin() as session:
        await session.execute(update(Run).where(Run.id == orphan)
                              .values(lease_until=lifecycle.utcnow() + timedelta(seconds=1)))
    queued = await admitted(db, batch_id, "w")

    executor = RunExecutor(Settings(database_url=state_dsn, lease_seconds=2, worker_concurrency=1,
                                    topic_prefix="takeover.test"),
                           db.sessions, Notifier(), "w", REGISTRY, execute=engine_stand_in)
    executor.start()
    executor.submit(queued, batch_id)
    try:
        async with asyncio.timeout(20):
            while True:
                async with db.sessions() as session:
                    statuses = dict((await session.execute(
                        select(Run.id, Run.status).where(Run.id.in_([orphan, queued])))).all())
                if set(statuses.values()) == {"SUCCESS"}:
                    break
                await asyncio.sleep(0.2)
    finally:
        await executor.stop()

"""The outbox gauges read the state store: rows still waiting, the age of the oldest, and rows the relay
gave up on counted apart; a state store that is down leaves the gauges as they were and the sampler alive."""

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from service.db.engine import make_engine, make_sessionmaker
from service.observability import backlog
from service.observability.backlog import sample, sampling_outbox
from service.observability.metrics import OUTBOX_AGE, OUTBOX_BACKLOG, OUTBOX_REFUSED
from service.runs.outbox import MAX_ATTEMPTS
from tests.support.brokers import free_port
from tests.support.databases import migrated_database


@pytest.fixture(scope="module")
def outbox_dsn() -> Iterator[str]:
    with migrated_database("bs_gauges") as dsn:
        yield dsn


def gauge(metric) -> float:
    return next(s.value for m in metric.collect() for s in m.samples)


async def test_waiting_rows_their_age_and_refused_rows(outbox_dsn) -> None:
    conn = await asyncpg.connect(outbox_dsn)
    try:
        await conn.execute(
            "INSERT INTO outbox (topic, value, created_at, attempts, published_at) VALUES "
            "('t', 'a', now() - interval '90 seconds', 0, NULL), ('t', 'b', now() - interval '5 seconds', 2, NULL), "
            "('t', 'c', now() - interval '1 hour', $1, NULL), ('t', 'd', now() - interval '2 hours', 0, now())",
            MAX_ATTEMPTS)
    finally:
        await conn.close()
    engine = make_engine(outbox_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        await sample(make_sessionmaker(engine))
    finally:
        await engine.dispose()
    assert gauge(OUTBOX_BACKLOG) == 2  # the published row and the given-up row are not waiting
    assert 90 <= gauge(OUTBOX_AGE) < 120  # the given-up row (an hour old) does not hold the age up
    assert gauge(OUTBOX_REFUSED) == 1


async def test_a_state_store_that_is_down_leaves_the_gauges_and_the_sampler_running(monkeypatch) -> None:
    tries: list[BaseException | None] = []

    async def counted(sessions) -> None:
        try:
            await sample(sessions)
        except Exception as error:
            tries.append(error)
            raise

    monkeypatch.setattr(backlog, "sample", counted)
    OUTBOX_BACKLOG.set(7)
    engine = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none", connect_timeout=1)
    try:
        async with sampling_outbox(make_sessionmaker(engine), every=0.05):
            await asyncio.sleep(0.4)
    finally:
        await engine.dispose()
    assert len(tries) >= 2 and all(isinstance(error, OSError) for error in tries)  # failed, and tried again
    assert gauge(OUTBOX_BACKLOG) == 7

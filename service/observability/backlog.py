"""The outbox gauges (`batchsync_outbox_backlog`, `…_oldest_age_seconds`, `…_refused`), sampled from the
state store every few seconds by each process that runs an outbox relay.

One indexed query (`ix_outbox_unpublished` covers the unpublished rows) every SAMPLE_SECONDS, off the
hot path. Rows the relay gave up on (refused by the broker MAX_ATTEMPTS times) are counted apart, so the
age alert speaks of rows still waiting and a given-up row has its own.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.observability.metrics import OUTBOX_AGE, OUTBOX_BACKLOG, OUTBOX_REFUSED
from service.runs.outbox import MAX_ATTEMPTS

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 5.0
_QUERY = text(
    "SELECT count(*) FILTER (WHERE attempts < :limit), "
    "coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE attempts < :limit)), 0), "
    "count(*) FILTER (WHERE attempts >= :limit) "
    "FROM outbox WHERE published_at IS NULL"
)


async def sample(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        waiting, age, refused = (await session.execute(_QUERY, {"limit": MAX_ATTEMPTS})).one()
    OUTBOX_BACKLOG.set(waiting)
    OUTBOX_AGE.set(float(age))
    OUTBOX_REFUSED.set(refused)


@contextlib.asynccontextmanager
async def sampling_outbox(sessions: async_sessionmaker[AsyncSession],
                          every: float = SAMPLE_SECONDS) -> AsyncIterator[None]:
    """Keep the outbox gauges current while the block runs."""

    async def loop() -> None:
        while True:
            try:
                await sample(sessions)
            except Exception as exc:  # the state store is down: the relay says so; the gauges keep their values
                log.debug("outbox sample failed: %r", exc)
            await asyncio.sleep(every)

    task = asyncio.create_task(loop(), name="outbox-gauges")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

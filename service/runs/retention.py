"""Pruning what the state store only needs for a while; runs and their history are kept for ever.

- `request_ledger`: a request's idempotency record, answered or refused, pruned once it was last seen longer
  ago than `BATCHSYNC_LEDGER_RETENTION_SECONDS` (which Settings forbids to be shorter than the requests
  topic's retention, so a request still on the log is always recognised; a run is found by its id anyway).
- `projected_events` of runs finished longer ago than the same retention (service/history/retention.py).
- Published outbox rows have their own retention, pruned by the outbox relay.

Deletes go in batches of PRUNE_BATCH, one transaction each, so pruning a large backlog never holds long locks.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.db.models import RequestLedger
from service.history.retention import PRUNE_BATCH, prune_projected

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pruned:
    ledger: int
    projected: int


async def prune_ledger(session: AsyncSession, retention: timedelta) -> int:
    """Delete up to PRUNE_BATCH answered ledger rows last seen longer ago than `retention`."""
    doomed = (select(RequestLedger.request_id)
              .where(RequestLedger.last_seen_at < func.now() - retention, RequestLedger.outcome.is_not(None))
              .limit(PRUNE_BATCH))
    deleted = await session.scalars(delete(RequestLedger).where(RequestLedger.request_id.in_(doomed))
                                    .returning(RequestLedger.request_id))
    return len(deleted.all())


async def prune(sessions: async_sessionmaker[AsyncSession], retention: timedelta) -> Pruned:
    """Prune both tables to the retention, batch after batch."""
    ledger = projected = 0
    while True:
        async with sessions.begin() as session:
            step = await prune_ledger(session, retention)
        ledger += step
        if step < PRUNE_BATCH:
            break
    while True:
        async with sessions.begin() as session:
            step = await prune_projected(session, retention)
        projected += step
        if step < PRUNE_BATCH:
            break
    return Pruned(ledger, projected)


async def prune_periodically(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    """Prune at start and every `prune_every_seconds` until cancelled; failures wait for the next round."""
    retention = timedelta(seconds=settings.ledger_retention_seconds)
    while True:
        try:
            pruned = await prune(sessions, retention)
            if pruned.ledger or pruned.projected:
                log.info("pruned %d request_ledger and %d projected_events rows older than %s",
                         pruned.ledger, pruned.projected, retention)
        except Exception:
            log.warning("pruning failed; retrying in %.0fs", settings.prune_every_seconds, exc_info=True)
        await asyncio.sleep(settings.prune_every_seconds)

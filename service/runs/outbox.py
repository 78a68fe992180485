"""The outbox table: events written in the caller's transaction, so state and events commit together, and the
repository the relay (`producers/outbox_relay.py`) publishes them through, behind the `OutboxStore` port.

Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several relays can run side by side; a row is marked
published only after its ack. A row the broker refuses on its own (too large, a reply topic that cannot
exist) counts an attempt; after MAX_ATTEMPTS it stays in the table with its last error, so it cannot block
the rows behind it.

An ack is not durability (noida-db loses the last second of acked writes on a crash; a recreated topic
loses everything, docs/brokers.md), so published rows are kept for `BATCHSYNC_OUTBOX_RETENTION_SECONDS`:
the reconciler (consumers/outbox_reconciler.py) compares them with the log and puts back what it lacks.
"""

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.events import Event
from schemas.wire import EVENT_ID_HEADER, encode, event_headers, event_key
from service.db import driver
from service.db.models import Outbox
from service.observability import tracing
from service.ports import OutboxMessage, StateStoreUnavailable

MAX_ATTEMPTS = 10
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600


def _columns(topic: str, event: Event, key: str | None) -> tuple[str, bytes | None, bytes, dict[str, str]]:
    """An event's outbox row: topic, key (batchId unless a key is given; replies use correlationId), value, headers."""
    key_bytes = key.encode() if key is not None else event_key(event)
    return topic, key_bytes, encode(event), tracing.inject(event_headers(event))


def add_event(session: AsyncSession, topic: str, event: Event, key: str | None = None) -> Outbox:
    """Queue `event` for `topic` in the session's transaction."""
    topic, key_bytes, value, headers = _columns(topic, event, key)
    row = Outbox(topic=topic, key=key_bytes, value=value, headers=headers)
    session.add(row)
    return row


@dataclass(frozen=True)
class QueuedEvent:
    """An outbox row inserted through the driver (`insert_events`): an `OutboxMessage` once committed."""

    id: int
    topic: str
    key: bytes | None
    value: bytes
    headers: Mapping[str, str] | None


async def insert_events(conn: asyncpg.Connection, events: Sequence[tuple[str, Event, str | None]]) -> list[QueuedEvent]:
    """Queue (topic, event, key) rows in the driver transaction `conn`, in one INSERT and in this order (their
    ids ascend in it: the relay publishes by id)."""
    if not events:
        return []
    rows = [_columns(topic, event, key) for topic, event, key in events]
    values = ", ".join(f"(${i + 1}, ${i + 2}, ${i + 3}, ${i + 4})" for i in range(0, 4 * len(rows), 4))
    params = [param for topic, key, value, headers in rows for param in (topic, key, value, json.dumps(headers))]
    ids = sorted(row["id"] for row in await conn.fetch(
        f"INSERT INTO outbox (topic, key, value, headers) VALUES {values} RETURNING id", *params))
    return [QueuedEvent(row_id, *row) for row_id, row in zip(ids, rows, strict=True)]


async def mark_published(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    """Rows sent outside the relay (a run's replies, right after its completion): published, unless the relay
    holds them already (SKIP LOCKED), which then publishes them a second time (readers dedupe by eventId)."""
    if ids:
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE id IN (SELECT id FROM outbox WHERE id = ANY($1::bigint[]) "
            "AND published_at IS NULL FOR UPDATE SKIP LOCKED)", list(ids))


@dataclass
class _Claim:
    """The `OutboxClaim` of one driver transaction (the relay claims after every run: service/db/driver.py)."""

    conn: asyncpg.Connection
    rows: Sequence[QueuedEvent]

    @property
    def messages(self) -> Sequence[OutboxMessage]:
        return self.rows

    async def published(self, ids: Sequence[int]) -> None:
        if ids:
            # the time of the acks, not of the claim: a row published before a reconciler's read began is
            # on the log that read sees, unless the broker lost it
            await self.conn.execute("UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[])",
                                    list(ids))

    async def refused(self, message_id: int, error: BaseException) -> bool:
        attempts = await self.conn.fetchval(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1 RETURNING attempts",
            message_id, repr(error)[:1000])
        return int(attempts) >= MAX_ATTEMPTS


_CLAIM = """
SELECT id, topic, key, value, headers FROM outbox WHERE published_at IS NULL AND attempts < $1
 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"""


class SqlOutbox:
    """The `OutboxStore` over the state store's `outbox` table."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 retention_seconds: float = DEFAULT_RETENTION_SECONDS) -> None:
        self._sessions = sessions
        self._retention = timedelta(seconds=retention_seconds)

    @property
    def retention(self) -> timedelta:
        return self._retention

    @contextlib.asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[_Claim]:
        with _unavailable():
            async with driver.transaction(self._sessions) as conn:
                rows = await conn.fetch(_CLAIM, MAX_ATTEMPTS, limit)
                yield _Claim(conn, [QueuedEvent(**row) for row in rows])

    async def delete_published(self) -> int:
        """Forget rows published longer ago than the retention."""
        with _unavailable():
            async with self._sessions.begin() as session:
                deleted = (await session.scalars(
                    delete(Outbox).where(Outbox.published_at < func.now() - self._retention).returning(Outbox.id)
                )).all()
        return len(deleted)

    async def now(self) -> datetime:
        """The state store's clock, which `published_at` is written on."""
        with _unavailable():
            async with self._sessions() as session:
                now: datetime = (await session.execute(select(func.clock_timestamp()))).scalar_one()
                return now

    async def published(self, topic: str, since: datetime, until: datetime) -> dict[str, int]:
        """eventId → row id of the rows to `topic` published in [since, until]."""
        event_id = Outbox.headers[EVENT_ID_HEADER].astext
        with _unavailable():
            async with self._sessions() as session:
                rows = await session.execute(
                    select(event_id, Outbox.id).where(Outbox.topic == topic, Outbox.published_at >= since,
                                                      Outbox.published_at <= until))
                return {found: row_id for found, row_id in rows.all() if found is not None}

    async def unpublish(self, ids: Sequence[int]) -> int:
        """Queue published rows again (the log lost them); the relay sends them in id order."""
        if not ids:
            return 0
        with _unavailable():
            async with self._sessions.begin() as session:
                again = (await session.scalars(
                    update(Outbox).where(Outbox.id.in_(ids), Outbox.published_at.is_not(None))
                    .values(published_at=None, attempts=0, last_error=None).returning(Outbox.id)
                )).all()
        return len(again)


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """Database failures become the port's StateStoreUnavailable, so the relay needs no SQLAlchemy."""
    try:
        yield
    except (SQLAlchemyError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StateStoreUnavailable(repr(exc)) from exc

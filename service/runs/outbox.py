"""The outbox table: events written in the caller's transaction, so state and events commit together, and the
repository the relay (`producers/outbox_relay.py`) publishes them through, behind the `OutboxStore` port.

Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several relays can run side by side; a row is marked
published only after its ack. A row the broker refuses on its own (too large, a reply topic that cannot
exist) counts an attempt; after MAX_ATTEMPTS it stays in the table with its last error, so it cannot block
the rows behind it.
"""

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.events import Event
from schemas.wire import encode, event_headers, event_key
from service.db.models import Outbox
from service.observability import tracing
from service.ports import OutboxMessage, StateStoreUnavailable

MAX_ATTEMPTS = 10
KEEP_PUBLISHED = text("interval '1 hour'")


def add_event(session: AsyncSession, topic: str, event: Event, key: str | None = None) -> None:
    """Queue `event` for `topic`; keyed by batchId unless a key is given (replies use correlationId)."""
    session.add(
        Outbox(
            topic=topic,
            key=key.encode() if key is not None else event_key(event),
            value=encode(event),
            headers=tracing.inject(event_headers(event)),
        )
    )


@dataclass
class _Claim:
    """The `OutboxClaim` of one transaction."""

    session: AsyncSession
    rows: Sequence[Outbox]

    @property
    def messages(self) -> Sequence[OutboxMessage]:
        return self.rows

    async def published(self, ids: Sequence[int]) -> None:
        if ids:
            await self.session.execute(update(Outbox).where(Outbox.id.in_(ids)).values(published_at=func.now()))

    async def refused(self, message_id: int, error: BaseException) -> bool:
        row = next(r for r in self.rows if r.id == message_id)
        row.attempts += 1
        row.last_error = repr(error)[:1000]
        return row.attempts >= MAX_ATTEMPTS


class SqlOutbox:
    """The `OutboxStore` over the state store's `outbox` table."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @contextlib.asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[_Claim]:
        with _unavailable():
            async with self._sessions.begin() as session:
                rows = (await session.scalars(
                    select(Outbox)
                    .where(Outbox.published_at.is_(None), Outbox.attempts < MAX_ATTEMPTS)
                    .order_by(Outbox.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )).all()
                yield _Claim(session, rows)

    async def delete_published(self) -> int:
        with _unavailable():
            async with self._sessions.begin() as session:
                deleted = (await session.scalars(
                    delete(Outbox).where(Outbox.published_at < func.now() - KEEP_PUBLISHED).returning(Outbox.id)
                )).all()
        return len(deleted)


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """Database failures become the port's StateStoreUnavailable, so the relay needs no SQLAlchemy."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        raise StateStoreUnavailable(repr(exc)) from exc

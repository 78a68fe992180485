"""Consumer positions kept in PostgreSQL, written in the same transaction as the effects they cover.

The broker's committed offsets are only a lag hint; these rows decide where a consumer resumes.
"""

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.models import ConsumerOffset


async def load_offsets(session: AsyncSession, group_id: str, topic: str) -> dict[int, int]:
    """Partition → next offset to read, for every partition this group has stored."""
    rows = await session.execute(
        select(ConsumerOffset.partition, ConsumerOffset.next_offset).where(
            ConsumerOffset.group_id == group_id, ConsumerOffset.topic == topic
        )
    )
    return {partition: next_offset for partition, next_offset in rows.all()}


async def store_offsets(session: AsyncSession, group_id: str, topic: str, offsets: dict[int, int]) -> None:
    """Upsert the next offsets in the caller's transaction."""
    if not offsets:
        return
    stmt = insert(ConsumerOffset).values([
        {"group_id": group_id, "topic": topic, "partition": partition, "next_offset": next_offset}
        for partition, next_offset in offsets.items()
    ])
    await session.execute(stmt.on_conflict_do_update(
        index_elements=[ConsumerOffset.group_id, ConsumerOffset.topic, ConsumerOffset.partition],
        set_={"next_offset": stmt.excluded.next_offset},
    ))


class PgOffsets:
    """One group's positions on one topic in `consumer_offsets`, each load and save its own transaction: the
    consume loop's `OffsetStore` for a handler whose effects commit elsewhere and are idempotent (a request
    admitted twice is recognised by its ledger row)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], group_id: str, topic: str) -> None:
        self._sessions = sessions
        self._group_id = group_id
        self._topic = topic

    async def load(self) -> Mapping[int, int]:
        async with self._sessions() as session:
            return await load_offsets(session, self._group_id, self._topic)

    async def save(self, offsets: Mapping[int, int]) -> None:
        async with self._sessions.begin() as session:
            await store_offsets(session, self._group_id, self._topic, dict(offsets))

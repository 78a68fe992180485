"""Consumer positions kept in PostgreSQL, written in the same transaction as the effects they cover.

The broker's committed offsets are only a lag hint; these rows decide where a consumer resumes. Each row also
keeps a mark of the log its offset was read from (service/positions.py), which the consume loop checks before
trusting the offset.
"""

from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.models import ConsumerOffset
from service.positions import Mark, Position


async def load_offsets(session: AsyncSession, group_id: str, topic: str) -> dict[int, Position]:
    """Partition → next offset to read and its mark, for every partition this group has stored."""
    rows = await session.execute(
        select(ConsumerOffset.partition, ConsumerOffset.next_offset, ConsumerOffset.mark_offset,
               ConsumerOffset.mark_digest).where(ConsumerOffset.group_id == group_id, ConsumerOffset.topic == topic)
    )
    return {partition: Position(next_offset, None if mark_offset is None or digest is None
                                else Mark(mark_offset, digest))
            for partition, next_offset, mark_offset, digest in rows.all()}


async def store_offsets(session: AsyncSession, group_id: str, topic: str, positions: Mapping[int, Position]) -> None:
    """Upsert the next offsets in the caller's transaction; a position without a mark keeps the stored one (a mark
    needs only to be a record of the same log)."""
    if not positions:
        return
    stmt = insert(ConsumerOffset).values([
        {"group_id": group_id, "topic": topic, "partition": partition, "next_offset": position.next_offset,
         "mark_offset": None if position.mark is None else position.mark.offset,
         "mark_digest": None if position.mark is None else position.mark.digest}
        for partition, position in positions.items()
    ])
    await session.execute(stmt.on_conflict_do_update(
        index_elements=[ConsumerOffset.group_id, ConsumerOffset.topic, ConsumerOffset.partition],
        set_={"next_offset": stmt.excluded.next_offset,
              "mark_offset": func.coalesce(stmt.excluded.mark_offset, ConsumerOffset.mark_offset),
              "mark_digest": func.coalesce(stmt.excluded.mark_digest, ConsumerOffset.mark_digest)},
    ))


class PgOffsets:
    """One group's positions on one topic in `consumer_offsets`, each load and save its own transaction: the
    consume loop's `OffsetStore` for a handler whose effects commit elsewhere and are idempotent (a request
    admitted twice is recognised by its ledger row)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], group_id: str, topic: str) -> None:
        self._sessions = sessions
        self._group_id = group_id
        self._topic = topic

    async def load(self) -> Mapping[int, Position]:
        async with self._sessions() as session:
            return await load_offsets(session, self._group_id, self._topic)

    async def save(self, offsets: Mapping[int, int], marks: Mapping[int, Mark]) -> None:
        positions = {partition: Position(offset, marks.get(partition)) for partition, offset in offsets.items()}
        async with self._sessions.begin() as session:
            await store_offsets(session, self._group_id, self._topic, positions)

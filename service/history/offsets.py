"""Consumer positions kept in PostgreSQL, written in the same transaction as the effects they cover.

The broker's committed offsets are only a lag hint; these rows decide where a consumer resumes.
"""

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

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

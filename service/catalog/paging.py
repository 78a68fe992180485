"""Page requests (`pageNum`/`pageSize`) and the count-plus-slice query every list runs."""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

MAX_PAGE_SIZE = 500
MAX_PAGE_NUM = 1_000_000
"""Bounds the offset to 5·10⁸ rows: far beyond any real list, and always a valid PostgreSQL OFFSET."""


@dataclass(frozen=True)
class PageRequest:
    num: int = 1
    size: int = 10

    @property
    def offset(self) -> int:
        return (self.num - 1) * self.size


async def fetch_page(session: AsyncSession, query: Select[Any], page: PageRequest) -> tuple[int, list[Any]]:
    """The total count of `query` and the rows of the requested page, in the query's order."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (await session.scalars(query.offset(page.offset).limit(page.size))).all()
    return int(total or 0), list(rows)


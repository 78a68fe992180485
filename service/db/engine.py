"""Async engine and session factory; built by the composition root, never at import.

`hide_parameters`: a failed statement's message (logged, or shown in a traceback) never carries its
bound values, which may be connection rows.
"""

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def make_engine(url: str, connect_timeout: float = 5.0, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=connect_timeout,
        connect_args={"timeout": connect_timeout, "command_timeout": 60},
        hide_parameters=True,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)

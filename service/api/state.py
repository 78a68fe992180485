"""What the routes need from the composition root, built and closed there, never here."""

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.ports import SyncRequester


@dataclass
class AppState:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    requester: SyncRequester

"""What the routes need from the composition root, built and closed there, never here."""

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.event_hub import EventHub
from service.config import Settings
from service.ports import SyncRequester
from service.security.policy import AccessPolicy


@dataclass
class AppState:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    requester: SyncRequester
    policy: AccessPolicy = field(init=False)
    events: EventHub = field(default_factory=EventHub)
    """Lifecycle events for live clients; the composition root feeds it from the events topic."""

    def __post_init__(self) -> None:
        self.policy = AccessPolicy.from_settings(self.settings)

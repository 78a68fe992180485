"""Ports: the only ways the service reaches Kafka. `producers/` and `consumers/` satisfy them."""

from typing import Protocol

from schemas.events import BatchSyncCompleted, BatchSyncRequested


class BrokerUnavailable(Exception):
    """The broker did not accept a message in time."""


class SyncRequester(Protocol):
    async def request(self, event: BatchSyncRequested, timeout: float) -> BatchSyncCompleted | None:
        """Publish the request and await its correlated reply; None when `timeout` passes first.

        Raises BrokerUnavailable when the request could not be published.
        """
        ...


class OutboxNotifier(Protocol):
    def notify(self) -> None:
        """Wake the outbox relay: new rows were committed."""
        ...

"""Ports: the only ways the service reaches Kafka, and the only ways Kafka adapters reach the service's tables.

`producers/` and `consumers/` satisfy the Kafka-side ones (SyncRequester, OutboxNotifier); `service/` satisfies
the others (OutboxStore), and the composition root, `service/bootstrap.py`, hands each to the other side.
"""

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from schemas.events import BatchSyncCompleted, BatchSyncRequested


class BrokerUnavailable(Exception):
    """The broker did not accept a message in time."""


class StateStoreUnavailable(Exception):
    """The state store (PostgreSQL) could not be reached or did not commit; worth retrying later."""


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


class OutboxMessage(Protocol):
    """One committed outbox row, as the relay publishes it."""

    @property
    def id(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, str] | None: ...


class ReplySender(Protocol):
    async def send_now(self, messages: Sequence["OutboxMessage"]) -> list[int]:
        """Publish committed outbox rows at once, ahead of the relay's drain (a reply someone waits for);
        returns the ids the broker acknowledged, for the caller to mark published. A row not acknowledged
        (only logged here) is the relay's, as is one it claimed first: a reader may then get a reply twice,
        and dedupes it by eventId."""
        ...


class OutboxClaim(Protocol):
    """Rows claimed in one transaction: nobody else publishes them until it ends."""

    @property
    def messages(self) -> Sequence[OutboxMessage]: ...

    async def published(self, ids: Sequence[int]) -> None:
        """Mark rows sent; committed when the claim ends without an error."""
        ...

    async def refused(self, message_id: int, error: BaseException) -> bool:
        """Count a publish the broker refused; True when the row has had its last attempt."""
        ...


class OutboxStore(Protocol):
    """The outbox table as the relay sees it (`service/runs/outbox.py` implements it).

    Raises StateStoreUnavailable when the state store cannot be reached.
    """

    def claim(self, limit: int) -> AbstractAsyncContextManager[OutboxClaim]:
        """Up to `limit` unpublished rows in id order, held until the context ends (and committed then)."""
        ...

    async def delete_published(self) -> int:
        """Forget rows published a while ago; returns how many."""
        ...

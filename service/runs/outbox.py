"""Writing events to the outbox, in the caller's transaction, so state and events commit together."""

from sqlalchemy.ext.asyncio import AsyncSession

from schemas.events import Event
from service.db.models import Outbox


def event_headers(event: Event) -> dict[str, str]:
    return {
        "eventType": event.event_type,
        "schemaVersion": str(event.schema_version),
        "correlationId": event.correlation_id,
        "eventId": str(event.event_id),
    }


def encode(event: Event) -> bytes:
    return event.model_dump_json(by_alias=True).encode()


def add_event(session: AsyncSession, topic: str, event: Event, key: str | None = None) -> None:
    """Queue `event` for `topic`; keyed by batchId unless a key is given (replies use correlationId)."""
    session.add(
        Outbox(
            topic=topic,
            key=(key if key is not None else str(event.batch_id)).encode(),
            value=encode(event),
            headers=event_headers(event),
        )
    )

"""The delivery log (`notifications`): which notifications a finished run calls for, which are due, and how each
attempt went. One row per run and address; the body is the run's `BatchSyncCompleted` exactly as the events
topic carries it, so the receiver gets the event the audit log holds.

Back-off: attempt n waits `notify_backoff_seconds * 2**(n-1)`, times a jitter in [0.5, 1], so receivers that come
back are not hit by every batch at once; after `notify_max_attempts` the row is FAILED. An address the network
policy refuses is REFUSED at once, never retried: asking again cannot change the answer.
"""

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import NotificationOut, NotifySpec
from schemas.events import BatchSyncCompleted
from service.config import Settings
from service.db.models import Batch, Notification
from service.history.folds import completed_status


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    """Every attempt failed."""
    REFUSED = "REFUSED"
    """The network policy refuses the address (BATCHSYNC_EGRESS_DENY): never sent."""


@dataclass(frozen=True)
class Defaults:
    """What a batch without its own `notify` gets: `BATCHSYNC_NOTIFY_URL` and `BATCHSYNC_NOTIFY_ON`."""

    url: str | None
    on: frozenset[str]
    max_age: timedelta
    max_attempts: int
    backoff_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "Defaults":
        on = frozenset(part.strip().upper() for part in settings.notify_on.split(",") if part.strip())
        return cls(settings.notify_url or None, on, timedelta(seconds=settings.notify_max_age_seconds),
                   settings.notify_max_attempts, settings.notify_backoff_seconds)


def address_of(batch: Batch | None, defaults: Defaults) -> tuple[str, frozenset[str]] | None:
    """Where a run of `batch` is reported, and for which outcomes; None when nowhere."""
    if batch is not None and batch.notify:
        try:
            spec = NotifySpec.model_validate(batch.notify)
        except ValidationError:
            return None
        return spec.url, frozenset(on.value for on in spec.on)
    return (defaults.url, defaults.on) if defaults.url else None


async def enqueue(session: AsyncSession, event: BatchSyncCompleted, body: bytes, defaults: Defaults,
                  now: datetime) -> bool:
    """Record the notification `event` calls for, once per run and address (caller commits); False when none."""
    if event.run_id is None or now - event.occurred_at > defaults.max_age:
        return False
    address = address_of(await session.get(Batch, event.batch_id), defaults)
    if address is None or completed_status(event).value not in address[1]:
        return False
    added = await session.execute(
        insert(Notification)
        .values(run_id=event.run_id, batch_id=event.batch_id, event_id=event.event_id, url=address[0], body=body)
        .on_conflict_do_nothing(index_elements=[Notification.run_id, Notification.url])
        .returning(Notification.id)
    )
    return added.first() is not None


@dataclass(frozen=True)
class Due:
    id: int
    url: str
    body: bytes
    attempts: int


async def claim_due(session: AsyncSession, limit: int, hold_seconds: float) -> list[Due]:
    """Up to `limit` due deliveries, held for `hold_seconds` (their next attempt moves past the send), so another
    sender skips them; a sender that dies mid-send leaves them due again afterwards."""
    rows = (await session.scalars(
        select(Notification)
        .where(Notification.status == DeliveryStatus.PENDING.value, Notification.next_attempt_at <= func.now())
        .order_by(Notification.next_attempt_at).limit(limit).with_for_update(skip_locked=True)
    )).all()
    if rows:
        await session.execute(
            update(Notification).where(Notification.id.in_([r.id for r in rows]))
            .values(next_attempt_at=func.now() + timedelta(seconds=hold_seconds))
        )
    return [Due(r.id, r.url, r.body, r.attempts) for r in rows]


@dataclass(frozen=True)
class Attempt:
    """How one POST went: delivered, refused by the policy, or failed (with the receiver's status if any)."""

    delivered: bool = False
    refused: bool = False
    response_status: int | None = None
    error: str | None = None


def next_wait(defaults: Defaults, attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure."""
    return timedelta(seconds=defaults.backoff_seconds * 2 ** (attempts - 1) * random.uniform(0.5, 1.0))


async def record(session: AsyncSession, due: Due, attempt: Attempt, defaults: Defaults) -> DeliveryStatus:
    """Write the attempt's outcome into the log (caller commits)."""
    attempts = due.attempts + 1
    values: dict[str, object] = {"attempts": attempts, "response_status": attempt.response_status,
                                 "last_error": None if attempt.error is None else attempt.error[:1000]}
    if attempt.delivered:
        status = DeliveryStatus.DELIVERED
        values.update(delivered_at=func.now(), next_attempt_at=None)
    elif attempt.refused:
        status = DeliveryStatus.REFUSED
        values.update(next_attempt_at=None)
    elif attempts >= defaults.max_attempts:
        status = DeliveryStatus.FAILED
        values.update(next_attempt_at=None)
    else:
        status = DeliveryStatus.PENDING
        values.update(next_attempt_at=func.now() + next_wait(defaults, attempts))
    await session.execute(update(Notification).where(Notification.id == due.id).values(status=status.value, **values))
    return status


def masked(url: str) -> str:
    """The address without its path and query: a chat webhook's path (Slack, WeCom, DingTalk) is its secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    shown = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    return shown + ("/…" if parts.path.strip("/") or parts.query else "")


async def for_run(session: AsyncSession, run_id: uuid.UUID) -> list[NotificationOut]:
    """The run's delivery log, oldest first, as the run detail shows it."""
    rows: Sequence[Notification] = (await session.scalars(
        select(Notification).where(Notification.run_id == run_id).order_by(Notification.id)
    )).all()
    return [NotificationOut(url=masked(r.url), status=r.status, attempts=r.attempts,
                            response_status=r.response_status, last_error=r.last_error,
                            next_attempt_at=r.next_attempt_at, delivered_at=r.delivered_at, created_at=r.created_at)
            for r in rows]

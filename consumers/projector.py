"""The history projector's handler: folds `P.events` into `run_history`, storing its offsets in the same
transaction.

PostgreSQL is the transaction boundary (docs/brokers.md): the consume loop (consumers/loop.py) seeks each
assigned partition to the offset stored with the projection, so a crash neither loses nor doubles an
event; Kafka commits are only a lag hint. Each offset is stored with the loop's mark of the log it was read
from, so a recreated events topic is read again from its start instead of from an offset of the old one.

Only events the service signed are projected (docs/spec.md §7, trust boundaries): an unsigned or forged
record is rejected to the DLQ with that reason, so whoever can write to the topic still cannot change
history or statistics.
"""

import logging
from collections.abc import Mapping
from datetime import timedelta

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consumers.loop import Batch, ConsumeLoop, PerBatch, Rejected, Subscription
from producers.publisher import Publisher
from schemas.events import LifecycleEvent, lifecycle_event_adapter
from service.config import Settings
from service.history.offsets import load_offsets, store_offsets
from service.history.projection import project, projector_group
from service.history.retention import settled_runs
from service.positions import Position
from service.security.event_signing import EventKeys

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 50
MAX_RECORDS = 500


def invalid_reason(exc: ValidationError) -> str:
    details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()[:3])
    return f"invalid event: {details}"


class Projector:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 publisher: Publisher | None = None) -> None:
        self._sessions = sessions
        self._topic = settings.topics.events
        self._group = projector_group(settings.topic_prefix)
        self._keys = EventKeys.from_settings(settings)
        self._retention = timedelta(seconds=settings.ledger_retention_seconds)
        self._own_publisher = publisher is None
        self._publisher = publisher or Publisher(settings)
        subscription = Subscription(name="projector", topic=self._topic, group_id=self._group,
                                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS, max_records=MAX_RECORDS)
        self._loop = ConsumeLoop(settings, subscription, PerBatch(self.apply, self.stored_offsets),
                                 publisher=self._publisher)

    async def run(self) -> None:
        """Project until cancelled; broker and database outages are waited out by the loop."""
        if self._own_publisher:
            await self._publisher.start()
        try:
            await self._loop.run()
        finally:
            if self._own_publisher:
                await self._publisher.stop()

    async def stored_offsets(self) -> Mapping[int, Position]:
        async with self._sessions() as session:
            return await load_offsets(session, self._group, self._topic)

    async def apply(self, batch: Batch) -> None:
        """Project one fetched batch and store its next offsets, all in one transaction; Rejected for a record
        that is not ours or not valid. Events of settled runs (finished longer ago than the retention, their
        `projected_events` pruned: service/history/retention.py) count as projected already."""
        projected = skipped = 0
        events: list[LifecycleEvent] = []
        for records in batch.records.values():
            for record in records:
                if (refusal := self._keys.refusal(record)) is not None:
                    raise Rejected(refusal, record)
                try:
                    events.append(lifecycle_event_adapter.validate_json(record.value or b""))
                except ValidationError as exc:
                    raise Rejected(invalid_reason(exc), record) from exc
        async with self._sessions.begin() as session:
            settled = await settled_runs(session, {e.run_id for e in events if e.run_id is not None},
                                         self._retention)
            for event in events:
                if event.run_id not in settled and await project(session, event):
                    projected += 1
                else:
                    skipped += 1
            positions = batch.positions()
            await store_offsets(session, self._group, self._topic, positions)
        log.debug("projected %d events (%d already projected), offsets %s", projected, skipped,
                  {partition: position.next_offset for partition, position in positions.items()})

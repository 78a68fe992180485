"""Put back on `P.events` what the broker acknowledged and then lost.

An ack is not durability here (docs/brokers.md): noida-db loses the last second of acknowledged writes when
it is killed, a memory-only broker or a recreated topic loses everything. The outbox keeps published rows
for a retention (service/runs/outbox.py), so this compares them with the log: every row to `P.events`
published in a window must be on the log, as a record the service signed with the row's eventId; the rows
missing are queued again and the relay publishes them (consumers deduplicate by eventId, so a row queued
again needlessly costs one duplicate, never a double effect).

At start the window is the whole retention; then each pass checks from shortly before the previous pass
began, so the last acks before a broker crash are checked again after it. Replies are not reconciled: a
requester that misses one times out and asks again, and its request is answered from the ledger.
"""

import asyncio
import logging
from datetime import datetime, timedelta

from consumers.audit_reader import EventLogReader
from consumers.loop import Record
from producers.topics import create_missing_topics
from schemas.wire import EVENT_ID_HEADER
from service.audit.replay import LogUnavailable
from service.config import Settings
from service.ports import BrokerUnavailable, OutboxNotifier, StateStoreUnavailable
from service.runs.outbox import SqlOutbox
from service.security.event_signing import EventKeys

log = logging.getLogger(__name__)

OVERLAP = timedelta(seconds=60)
"""Each pass reads back this far before the previous one began (and the log this far before its window)."""


class OutboxReconciler:
    def __init__(self, settings: Settings, store: SqlOutbox, notifier: OutboxNotifier) -> None:
        self._settings = settings
        self._store = store
        self._notifier = notifier
        self._keys = EventKeys.from_settings(settings)
        self._checked_from: datetime | None = None
        """Where the next pass starts; None before the first one (then: the whole retention)."""

    async def run(self) -> None:
        """Reconcile at start and every `outbox_reconcile_seconds` until cancelled; a pass that cannot read
        the log or the outbox is retried at the next one, from where the last good pass left off."""
        while True:
            try:
                await self.reconcile_once()
            except (LogUnavailable, StateStoreUnavailable) as exc:
                log.warning("outbox reconciliation failed, retrying in %.0fs: %s",
                            self._settings.outbox_reconcile_seconds, exc)
            await asyncio.sleep(self._settings.outbox_reconcile_seconds)

    async def reconcile_once(self) -> int:
        """One pass; returns how many rows were queued again."""
        began = await self._store.now()
        since = began - self._store.retention if self._checked_from is None else self._checked_from - OVERLAP
        topic = self._settings.topics.events
        try:  # a restarted Tansu acks writes to topics it forgot and keeps none: recreate ours before any resend
            created = await create_missing_topics(self._settings)
        except BrokerUnavailable as exc:
            raise LogUnavailable(str(exc)) from exc
        if created:
            log.warning("recreated missing topics %s before reconciling the outbox", ", ".join(created))
        on_log = await self._event_ids_on_log(since - OVERLAP)
        rows = await self._store.published(topic, since, began)
        missing = sorted(row_id for event_id, row_id in rows.items() if event_id not in on_log)
        queued = await self._store.unpublish(missing)
        if queued:
            log.warning("%s lacks %d of the %d events published since %s: queued again for the relay",
                        topic, queued, len(rows), since.isoformat(timespec="seconds"))
            self._notifier.notify()
        log.debug("%s holds all but %d of the %d events published since %s", topic, queued, len(rows),
                  since.isoformat(timespec="seconds"))
        self._checked_from = began
        return queued

    async def _event_ids_on_log(self, since: datetime) -> set[str]:
        """The eventIds of the signed records on `P.events` from `since` to its current end."""
        found: set[str] = set()
        async with EventLogReader(self._settings, since, name="outbox reconciler") as reader:
            async for records in reader.batches():
                found.update(event_id for record in records if (event_id := self._event_id(record)) is not None)
        return found

    def _event_id(self, record: Record) -> str | None:
        if self._keys.refusal(record) is not None:
            return None  # not written by the service: it cannot stand in for one of our events
        for name, value in record.headers:
            if name == EVENT_ID_HEADER:
                return value.decode(errors="replace")
        return None

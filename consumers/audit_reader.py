"""Reading `P.events` for an audit: every partition from the beginning (or from a time) up to the end
observed when reading began, without a consumer group.

The consume loop reads (a bounded subscription, consumers/bounded.py, which holds what the brokers here lie
about); this module only hands its fetches to audit replay through a short queue, so memory stays flat
however long the log. `offsets_for_times()` being only a lower bound (docs/brokers.md), the replay also
skips events older than the time by their `occurredAt`.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from consumers.bounded import Bounds
from consumers.loop import Batch, ConsumeLoop, PerBatch, Record, Subscription
from producers.clients import new_admin
from service.audit.replay import LogUnavailable
from service.config import Settings
from service.ports import BrokerUnavailable

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 50
POLL_TIMEOUT_MS = 200
MAX_RECORDS = 10_000
MAX_PARTITION_FETCH_BYTES = 8 * 1024 * 1024
QUEUED_FETCHES = 2
"""Fetches read ahead of the replay: enough to overlap reading with folding, few enough to keep memory flat."""


class EventLogReader:
    """An `EventSource` over the events topic; use as `async with EventLogReader(...) as source`."""

    def __init__(self, settings: Settings, since: datetime | None = None, name: str = "audit replay") -> None:
        subscription = Subscription(
            name=name, topic=settings.topics.events, group_id=None, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_records=MAX_RECORDS, poll_timeout_ms=POLL_TIMEOUT_MS, ensure_topics=False, bounds=Bounds(since),
            start_timeout=2 * settings.kafka_request_timeout_ms / 1000,
            max_partition_fetch_bytes=max(MAX_PARTITION_FETCH_BYTES, settings.max_message_bytes + 64 * 1024))
        self._loop = ConsumeLoop(settings, subscription, PerBatch(self._take))
        self._fetches: asyncio.Queue[list[Record] | None] = asyncio.Queue(QUEUED_FETCHES)
        self._task: asyncio.Task[None] | None = None
        self._failure: LogUnavailable | None = None

    @property
    def topic_exists(self) -> bool:
        return self._loop.extent is None or self._loop.extent.topic_exists

    @property
    def total(self) -> int | None:
        return None if self._loop.extent is None else self._loop.extent.total

    @property
    def end_offsets(self) -> dict[int, int]:
        return {} if self._loop.extent is None else self._loop.extent.end_offsets

    async def __aenter__(self) -> "EventLogReader":
        """Start reading; returns once positioned, raises `LogUnavailable` when the broker cannot be reached."""
        self._task = asyncio.create_task(self._read(), name="audit-reader")
        positioned = asyncio.create_task(self._loop.ready.wait())
        await asyncio.wait([self._task, positioned], return_when=asyncio.FIRST_COMPLETED)
        positioned.cancel()
        if self._failure is not None:
            await self.__aexit__()
            raise self._failure
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def batches(self) -> AsyncIterator[list[Record]]:
        """Records (with their keys and signature headers) in batches, per partition in offset order, up to
        the end seen at the start."""
        while (records := await self._fetches.get()) is not None:
            yield records
        if self._failure is not None:
            raise self._failure

    async def _read(self) -> None:
        """Run the bounded read; its end (or failure) is queued behind the last records."""
        try:
            await self._loop.run()
        except BrokerUnavailable as exc:
            self._failure = LogUnavailable(str(exc))
        await self._fetches.put(None)

    async def _take(self, batch: Batch) -> None:
        await self._fetches.put([record for records in batch.records.values() for record in records])


async def events_retention(settings: Settings) -> dict[str, str]:
    """The events topic's finite retention settings (`retention.ms`/`retention.bytes` not -1), if any."""
    admin = new_admin(settings)
    finite: dict[str, str] = {}
    try:
        async with asyncio.timeout(2 * settings.kafka_request_timeout_ms / 1000):
            await admin.start()
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, settings.topics.events)])
    except (KafkaError, OSError, TimeoutError) as exc:
        raise LogUnavailable(f"cannot describe {settings.topics.events}: {exc!r}") from exc
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    for response in responses:
        for resource in response.to_object()["resources"]:
            for entry in resource["config_entries"]:
                name, value = entry["config_names"], entry["config_value"]
                if name in ("retention.ms", "retention.bytes") and value is not None and value != "-1":
                    finite[name] = value
    return finite

"""Reading `P.events` for an audit: every partition from the beginning (or from a time) up to the end
observed when reading began, without a consumer group.

What the brokers here lie about (docs/brokers.md) shapes it: the end is the high-water mark reported by the
first fetch responses (`end_offsets()` is wrong on Tansu), a partition whose high-water mark never shows
up is treated as empty after a bounded wait, and `offsets_for_times()` is only a lower bound (Tansu
answers 0 for a future time), so the replay also skips events older than the time by their `occurredAt`.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from producers.clients import consumer_config, new_admin, new_consumer
from service.audit.replay import LogUnavailable
from service.config import Settings

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 50
MAX_RECORDS = 10_000
EMPTY_PARTITION_WAIT = 3.0
STALL_TIMEOUT = 30.0


class EventLogReader:
    """An `EventSource` over the events topic; use as `async with EventLogReader(...) as source`."""

    def __init__(self, settings: Settings, since: datetime | None = None) -> None:
        self._settings = settings
        self._since = since
        self._topic = settings.topics.events
        self._consumer: AIOKafkaConsumer | None = None
        self.total: int | None = None
        self.end_offsets: dict[int, int] = {}
        self.topic_exists = True

    async def __aenter__(self) -> "EventLogReader":
        usual = consumer_config(self._settings, group_id=None, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        consumer = new_consumer(self._settings, group_id=None, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                                max_partition_fetch_bytes=max(usual["max_partition_fetch_bytes"], 8 * 1024 * 1024))
        try:
            async with asyncio.timeout(2 * self._settings.kafka_request_timeout_ms / 1000):
                await consumer.start()
                topics = await consumer.topics()
        except (KafkaError, OSError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise LogUnavailable(f"cannot reach the broker at {self._settings.kafka_bootstrap}: {exc!r}") from exc
        self._consumer = consumer
        self.topic_exists = self._topic in topics
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), self._settings.kafka_request_timeout_ms / 1000)

    async def _start_positions(self, consumer: AIOKafkaConsumer,
                               tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where to begin per partition; a partition with nothing at or after `since` is absent."""
        if self._since is None:
            await consumer.seek_to_beginning(*tps)
            return {tp: await consumer.position(tp) for tp in tps}
        found = await consumer.offsets_for_times({tp: int(self._since.timestamp() * 1000) for tp in tps})
        starts = {}
        for tp in tps:
            at = found.get(tp)
            if at is not None:
                consumer.seek(tp, at.offset)
                starts[tp] = at.offset
        return starts

    async def batches(self) -> AsyncIterator[list[ConsumerRecord]]:
        """Records (with their keys and signature headers) in batches, per partition in offset order, up to
        the end seen at the start."""
        consumer = self._consumer
        if consumer is None or not self.topic_exists:
            self.total = 0
            return
        try:
            async for batch in self._read(consumer):
                yield batch
        except KafkaError as exc:
            raise LogUnavailable(f"reading {self._topic} failed: {exc!r}") from exc

    async def _read(self, consumer: AIOKafkaConsumer) -> AsyncIterator[list[ConsumerRecord]]:
        partitions = consumer.partitions_for_topic(self._topic) or set()
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = await self._start_positions(consumer, tps)
        for tp in tps:
            if tp not in starts:
                consumer.pause(tp)
                self.end_offsets[tp.partition] = -1
        pending = set(starts)
        ends: dict[TopicPartition, int] = {}
        began = last_record = time.monotonic()
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=200, max_records=MAX_RECORDS)
            values: list[ConsumerRecord] = []
            for tp in list(pending):
                values.extend(await self._take(consumer, tp, fetched.get(tp, ()), starts, ends, pending))
            now = time.monotonic()
            if values:
                last_record = now
                yield values
            if now - began > EMPTY_PARTITION_WAIT and now - last_record > EMPTY_PARTITION_WAIT:
                for tp in [t for t in pending if t not in ends]:
                    log.info("no high-water mark for %s after %.0fs: treated as empty", tp, EMPTY_PARTITION_WAIT)
                    ends[tp] = self.end_offsets[tp.partition] = starts[tp]
                    pending.discard(tp)
            if pending and now - last_record > STALL_TIMEOUT:
                stuck = sorted([(tp.partition, await consumer.position(tp), ends.get(tp)) for tp in pending])
                raise LogUnavailable(f"no progress reading {self._topic} for {STALL_TIMEOUT:.0f}s "
                                     f"(partition, position, end): {stuck}")
        self.total = sum(ends[t] - starts[t] for t in ends)

    async def _take(self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: Sequence[ConsumerRecord],
                    starts: dict[TopicPartition, int], ends: dict[TopicPartition, int],
                    pending: set[TopicPartition]) -> list[ConsumerRecord]:
        """The fetched records of `tp` before its end, learning the end from the first high-water mark seen;
        a partition that reached its end leaves `pending`."""
        if tp not in ends and (hw := consumer.highwater(tp)) is not None:
            ends[tp] = hw
            self.end_offsets[tp.partition] = hw
            self.total = sum(ends[t] - starts[t] for t in ends) if len(ends) == len(starts) else None
        end = ends.get(tp)
        taken = [record for record in records if end is None or record.offset < end]
        if end is not None and (await consumer.position(tp) >= end or starts[tp] >= end):
            pending.discard(tp)
            consumer.pause(tp)
        return taken


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

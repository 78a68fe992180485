"""Kafka topic source: a bounded read of JSON records, from the batch's stored offsets up to the
high-water marks seen when the run starts, then the run ends (records produced meanwhile wait for the
next run). Each chunk carries the exact next offset of every partition, so a resumed run neither skips
nor repeats a record.

Where a run starts: the offsets the batch's last successful run stopped at (kept in the state store as
the batch's high-water mark, committed with that run's outcome: our own checkpoint); for a batch that
never succeeded, the consumer group's committed offsets (`params.groupId`, default `batchsync-<topic>`);
else the earliest records. After a successful run the group's offsets are committed too, as a courtesy
for lag monitors; they are never the authority. High-water marks come from `consumer.highwater()` after
a fetch, never from `end_offsets()` (which the test broker gets wrong; see docs/brokers.md).

Records: each value must be a JSON object; a tombstone (null value) is skipped. Any other value fails
the run naming partition and offset (`params.onInvalid: "skip"` skips and counts them instead, with a
warning), because silently dropping data breaks "target equals source" without anyone noticing.
Columns come from `params.columns` or the keys of the first records. `cursorColumn` is refused: a topic
is already read incrementally by offsets.
"""

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from typing_extensions import override

from schemas.api import SourceSpec
from schemas.messages import (
    KAFKA_NO_RECORDS,
    KAFKA_SOURCE_NEEDS_TABLE,
    KAFKA_SOURCE_NO_CURSOR,
    kafka_no_high_water,
    kafka_not_object,
)
from service.connectors.base import Capabilities, Chunk, Column, Position, SelectItem, Source, TargetTypes
from service.connectors.json_records import declared_columns, learned_columns, row_decoder
from service.connectors.kafka.access import Access
from service.connectors.kafka.client import (
    METADATA_MAX_AGE_MS,
    REQUEST_TIMEOUT_MS,
    bounded,
    cleared,
    client_config,
    partitions_of,
    settings_of,
    started,
    stop_consumer,
    topic_of,
    wait_for,
)
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.model import Endpoint

log = logging.getLogger(__name__)

SAMPLE_RECORDS = 200
"""Records read to learn the columns when the connection does not declare them."""
POLL_MS = 200
IDLE_SECONDS = 5.0
"""How long a partition may stay silent below its high-water mark (offsets lost to compaction or
transaction markers) before the run takes it as read to the end."""


class KafkaSource(Source):
    capabilities = Capabilities()

    def __init__(self, endpoint: Endpoint, spec: SourceSpec, connect_timeout: float) -> None:
        if spec.table is None:
            raise ConfigInvalid(KAFKA_SOURCE_NEEDS_TABLE)
        self._spec, self._timeout = spec, connect_timeout
        self._settings = settings_of(endpoint)
        self.topic = topic_of(self._settings, spec.table)
        self._group = self._settings.group_id or f"batchsync-{self.topic}"
        params = endpoint.params or {}
        self._declared = params.get("columns")
        self._skip_invalid = params.get("onInvalid", "fail") == "skip"
        self._consumer: AIOKafkaConsumer | None = None
        self._access: Access | None = None
        self._partitions: list[TopicPartition] = []
        self._columns: list[str] = []
        self._final: dict[str, int | None] | None = None
        self.skipped = 0

    async def __aenter__(self) -> Self:
        self._access = await cleared(self._settings, [self.topic, self._group], "source", self._timeout)
        consumer = AIOKafkaConsumer(
            **client_config(self._settings, self._access), group_id=self._group, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=100, request_timeout_ms=REQUEST_TIMEOUT_MS,
            metadata_max_age_ms=METADATA_MAX_AGE_MS, max_partition_fetch_bytes=2 * 1024 * 1024,
        )
        self._consumer = await started(consumer, self._access, "source", self._timeout)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        if self._consumer is None:
            return
        try:
            if exc_type is None and self._final is not None:
                await self._commit(self._final)
        finally:
            with contextlib.suppress(Exception):
                await stop_consumer(self._consumer)

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "source used outside its context"
        return self._consumer

    async def _commit(self, offsets: dict[str, int | None]) -> None:
        """The courtesy commit of the group's offsets; bounded, and a failure only costs a lag figure."""
        commit = {TopicPartition(self.topic, int(p)): OffsetAndMetadata(o, "") for p, o in offsets.items()
                  if o is not None}
        if not commit:
            return
        try:
            await bounded(self.consumer.commit(commit), "source", self._timeout)
        except Exception as exc:
            log.warning("could not commit group offsets for topic %s: %s", self.topic, type(exc).__name__)

    async def describe(self) -> list[Column]:
        if self._spec.cursor_column is not None:
            raise ConfigInvalid(KAFKA_SOURCE_NO_CURSOR)
        assert self._access is not None, "source used outside its context"
        partitions = await partitions_of(self._settings, self._access, self.topic, "source", self._timeout)
        self._partitions = [TopicPartition(self.topic, p) for p in partitions]
        self.consumer.assign(self._partitions)
        if self._declared:
            columns = declared_columns(self._declared)
        else:
            columns = learned_columns(await self._sample())
            if not columns:
                raise ConfigInvalid(KAFKA_NO_RECORDS)
        self._columns = [c.name for c in columns]
        return columns

    async def _sample(self) -> list[dict[str, Any]]:
        """The first records of the topic (bounded in count and time), to learn the columns from."""
        await self.consumer.seek_to_beginning(*self._partitions)
        records: list[dict[str, Any]] = []
        await self._until_highwater()
        pending = {tp for tp in self._partitions if (self.consumer.highwater(tp) or 0) > 0}
        idle = 0
        while pending and len(records) < SAMPLE_RECORDS and idle < 10:
            batch = await self.consumer.getmany(*pending, timeout_ms=POLL_MS, max_records=SAMPLE_RECORDS)
            idle = 0 if batch else idle + 1
            for tp, messages in batch.items():
                records.extend(r for r in (self._record(m) for m in messages) if r is not None)
                pending.discard(tp)
        return records

    async def _until_highwater(self) -> None:
        """Fetch until every partition's high-water mark is known (the first fetch answer carries it)."""
        def known() -> bool:
            return all(self.consumer.highwater(tp) is not None for tp in self._partitions)

        async def poll() -> None:
            await self.consumer.getmany(*self._partitions, timeout_ms=50, max_records=1)

        if not await wait_for(known, poll, max(self._timeout, 2.0) * 2):
            raise SourceFailed(kafka_no_high_water(self.topic))

    def _record(self, message: ConsumerRecord) -> dict[str, Any] | None:
        if message.value is None:
            return None
        try:
            value = json.loads(message.value)
        except (ValueError, UnicodeDecodeError):
            value = None
        if isinstance(value, dict):
            return value
        if self._skip_invalid:
            self.skipped += 1
            return None
        raise SourceFailed(kafka_not_object(self.topic, message.partition, message.offset))

    async def start(self, high_water_mark: Any | None) -> Position:
        """Start offsets (previous run, else group commits, else earliest) and the run's stop offsets."""
        mark = high_water_mark if isinstance(high_water_mark, dict) else {}
        stored = mark.get("offsets") if mark.get("topic") == self.topic else None  # the batch may have moved
        start: dict[str, int | None] = {}
        for tp in self._partitions:
            offset = (stored or {}).get(str(tp.partition))
            if offset is None and stored is None:
                offset = await bounded(self.consumer.committed(tp), "source", self._timeout)
            start[str(tp.partition)] = offset
        await self._seek(start)
        await self._until_highwater()
        stop = {str(tp.partition): int(self.consumer.highwater(tp) or 0) for tp in self._partitions}
        return {"next": start, "stop": stop}

    async def _seek(self, offsets: dict[str, int | None]) -> None:
        for tp in self._partitions:
            offset = offsets.get(str(tp.partition))
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)

    async def estimate(self, position: Position) -> int | None:
        """Records left below the stop offsets (from the log start where no offset is known yet)."""
        starts = await bounded(self.consumer.beginning_offsets(self._partitions), "source", self._timeout)
        total = 0
        for tp in self._partitions:
            first = position["next"].get(str(tp.partition))
            total += max(0, position["stop"].get(str(tp.partition), 0) - (first if first is not None else starts[tp]))
        return total

    @override
    def high_water_mark(self, position: Position, previous: Any | None) -> Any | None:
        """The offsets to start the next run at: where this run stopped, per partition."""
        offsets = dict(position.get("next") or {})
        for partition, stop in (position.get("stop") or {}).items():
            if offsets.get(partition) is None and stop == 0:
                offsets[partition] = 0
        self._final = offsets
        return {"topic": self.topic, "offsets": offsets}

    @override
    async def chunks(
        self, plan: list[SelectItem], target_types: TargetTypes, position: Position, *, size: int, raw: bool
    ) -> AsyncIterator[Chunk]:
        decode = row_decoder(self._columns, plan, target_types)
        columns = [item.target for item in plan]
        following: dict[str, int | None] = dict(position["next"])
        stop: dict[str, int] = position["stop"]
        await self._seek(following)
        active = {tp for tp in self._partitions
                  if (following.get(str(tp.partition)) or 0) < stop.get(str(tp.partition), 0)}
        rows: list[tuple[Any, ...]] = []
        idle = 0.0
        while active:
            batch = await self.consumer.getmany(*active, timeout_ms=POLL_MS, max_records=size - len(rows))
            for tp, messages in batch.items():
                end = stop[str(tp.partition)]
                for message in messages:
                    if message.offset >= end:
                        break
                    following[str(tp.partition)] = message.offset + 1
                    record = self._record(message)
                    if record is not None:
                        rows.append(decode(record))
            idle = 0.0 if batch else idle + POLL_MS / 1000
            for tp in list(active):
                if await self.consumer.position(tp) >= stop[str(tp.partition)]:
                    active.discard(tp)
            if active and idle >= IDLE_SECONDS:
                log.warning("topic %s: partitions %s silent below their high-water marks; taken as read",
                            self.topic, sorted(tp.partition for tp in active))
                for tp in active:
                    following[str(tp.partition)] = stop[str(tp.partition)]
                active.clear()
            if rows and (len(rows) >= size or not active):
                if self.skipped:
                    log.warning("topic %s: %d records that are not JSON objects skipped so far", self.topic,
                                self.skipped)
                yield Chunk(number=0, position={"next": dict(following), "stop": stop}, columns=columns, rows=rows)
                rows = []

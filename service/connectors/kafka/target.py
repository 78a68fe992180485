"""Kafka topic target: each row becomes one JSON record (decimals as strings, datetimes RFC 3339, binary
base64, json columns nested), keyed by `params.key` (or the batch's keyColumns), produced with
`acks=all`; a chunk's acks are awaited before its checkpoint is stored.

At-least-once, declared as `transactional_checkpoint=False`: records and checkpoint cannot commit
together without Kafka transactions, which we do not use (the test broker fakes them). A crash after a
chunk's acks and before its checkpoint re-produces that chunk on resume; consumers dedup by key.

Checkpoints live in the target cluster, in the compacted topic `_batchsync_checkpoints` (one partition,
keyed by checkpoint key; `finish` writes a tombstone). That is where the rows are: any worker on any
host that resumes the run finds it, and it lives and dies with the data it describes, unlike a file on
one worker's disk. Append is the only mode: a topic has no rows to overwrite or merge.
"""

import asyncio
import base64
import contextlib
import json
import logging
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from typing_extensions import override

from schemas.api import TargetSpec
from schemas.messages import KAFKA_CHECKPOINT_TIMEOUT, KAFKA_KEY_COLUMNS, columns_not_mapped, kafka_record_too_large
from service.connectors.base import Capabilities, Checkpoint, Chunk, Column, Target
from service.connectors.json_records import RECORD_TYPES
from service.connectors.kafka.access import Access
from service.connectors.kafka.client import (
    MAX_RECORD_BYTES,
    METADATA_MAX_AGE_MS,
    REQUEST_TIMEOUT_MS,
    bounded,
    cleared,
    client_config,
    map_error,
    open_admin,
    partitions_of,
    settings_of,
    started,
    stop_consumer,
    topic_of,
    wait_for,
)
from service.sync.errors import ConfigInvalid, TargetFailed
from service.sync.model import Endpoint

log = logging.getLogger(__name__)

CHECKPOINTS = "_batchsync_checkpoints"
IDLE_POLLS = 25
"""Empty fetches (of 200 ms) after which the checkpoint topic is taken as read, should its last offsets
be gone (compaction) so that the position never reaches the high-water mark."""


def _plain(value: Any) -> Any:
    """How JSON carries what JSON has no type for (see `json_records.py` for the way back)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def encode(columns: list[str], json_columns: set[str], row: tuple[Any, ...]) -> bytes:
    """One row as a JSON object; a json column's text (PostgreSQL hands jsonb over as text) is nested."""
    record = {}
    for name, value in zip(columns, row, strict=True):
        if name in json_columns and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        record[name] = value
    return json.dumps(record, ensure_ascii=False, default=_plain, separators=(",", ":")).encode()


def key_of(indexes: list[int], row: tuple[Any, ...]) -> bytes | None:
    """The record key: one column's value as text, several as a JSON array; None without key columns."""
    if not indexes:
        return None
    if len(indexes) == 1:
        value = row[indexes[0]]
        return value.encode() if isinstance(value, str) else json.dumps(value, default=_plain).encode()
    return json.dumps([row[i] for i in indexes], default=_plain, ensure_ascii=False).encode()


class KafkaTarget(Target):
    capabilities = Capabilities(transactional_checkpoint=False, types=RECORD_TYPES)

    def __init__(self, endpoint: Endpoint, spec: TargetSpec, connect_timeout: float) -> None:
        self._spec, self._timeout = spec, connect_timeout
        self._settings = settings_of(endpoint)
        self.topic = topic_of(self._settings, spec.table)
        self._key_columns = self._settings.key or list(spec.key_columns or [])
        self._producer: AIOKafkaProducer | None = None
        self._access: Access | None = None
        self._json_columns: set[str] = set()
        self._key_indexes: list[int] = []
        self._saved: Checkpoint | None = None

    async def __aenter__(self) -> Self:
        self._access = await cleared(self._settings, [self.topic, CHECKPOINTS], "target", self._timeout)
        producer = AIOKafkaProducer(
            **client_config(self._settings, self._access), acks="all", enable_idempotence=False, linger_ms=5,
            max_batch_size=256 * 1024, max_request_size=MAX_RECORD_BYTES + 64 * 1024,
            request_timeout_ms=REQUEST_TIMEOUT_MS, metadata_max_age_ms=METADATA_MAX_AGE_MS, retry_backoff_ms=100,
        )
        self._producer = await started(producer, self._access, "target", self._timeout)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await self._producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "target used outside its context"
        return self._producer

    @property
    def access(self) -> Access:
        assert self._access is not None, "target used outside its context"
        return self._access

    async def describe(self) -> list[Column]:
        """The topic must exist (TableMissing otherwise); it has no columns of its own."""
        await partitions_of(self._settings, self.access, self.topic, "target", self._timeout)
        await self._ensure_checkpoints()
        return []

    async def accept_columns(self, columns: list[Column]) -> list[Column]:
        self._json_columns = {c.name for c in columns if c.kind == "json"}
        return [Column(c.name, c.kind or c.sql_type or "string", c.kind) for c in columns]

    async def _ensure_checkpoints(self) -> None:
        admin = await open_admin(self._settings, self.access, "target", self._timeout)
        try:
            if CHECKPOINTS in await bounded(admin.list_topics(), "target", self._timeout):
                return
            topic = NewTopic(CHECKPOINTS, 1, 1, topic_configs={"cleanup.policy": "compact"})
            with contextlib.suppress(TopicAlreadyExistsError):
                await bounded(admin.create_topics([topic]), "target", self._timeout)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    async def read_checkpoint(self, key: str) -> Checkpoint | None:
        """The newest checkpoint record of `key`, reading the compacted topic up to its high-water mark."""
        consumer = AIOKafkaConsumer(
            **client_config(self._settings, self.access), group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=50, request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
        await started(consumer, self.access, "target", self._timeout)
        tp = TopicPartition(CHECKPOINTS, 0)
        latest: dict[str, Any] | None = None
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)

            async def poll() -> None:
                await consumer.getmany(tp, timeout_ms=50, max_records=1)

            consumer_ready = await wait_for(lambda: consumer.highwater(tp) is not None, poll, self._timeout * 2)
            if not consumer_ready:
                raise TargetFailed(KAFKA_CHECKPOINT_TIMEOUT, detail=CHECKPOINTS)
            await consumer.seek_to_beginning(tp)
            end, idle = consumer.highwater(tp) or 0, 0
            while await consumer.position(tp) < end and idle < IDLE_POLLS:
                batch = await bounded(consumer.getmany(tp, timeout_ms=200), "target", REQUEST_TIMEOUT_MS / 1000)
                idle = 0 if batch else idle + 1
                for message in batch.get(tp, []):
                    if message.key is not None and message.key.decode() == key and message.offset < end:
                        latest = json.loads(message.value) if message.value is not None else None
        finally:
            with contextlib.suppress(Exception):
                await stop_consumer(consumer)
        self._saved = None if latest is None else Checkpoint(
            chunk=latest["chunk"], position=latest["position"], records_read=latest["recordsRead"],
            records_written=latest["recordsWritten"], extra=latest.get("extra") or {},
        )
        return self._saved

    @override
    async def prepare(self, key: str, columns: list[str]) -> None:
        missing = [k for k in self._key_columns if k not in columns]
        if missing:
            raise ConfigInvalid(columns_not_mapped(KAFKA_KEY_COLUMNS, missing))
        self._key_indexes = [columns.index(k) for k in self._key_columns]

    async def write(self, key: str, chunk: Chunk, previous: Checkpoint) -> Checkpoint | None:
        if self._saved is not None and self._saved.chunk >= chunk.number:
            await chunk.drain()
            return None
        rows = chunk.rows or []
        try:
            acks = []
            for row in rows:
                value = encode(chunk.columns, self._json_columns, row)
                if len(value) > MAX_RECORD_BYTES:
                    raise TargetFailed(kafka_record_too_large(MAX_RECORD_BYTES), detail=self.topic)
                acks.append(await self.producer.send(self.topic, value=value, key=key_of(self._key_indexes, row)))
            await asyncio.gather(*acks)
            checkpoint = previous.after(chunk, len(rows), len(rows))
            await self._store(key, checkpoint)
        except KafkaError as exc:
            raise map_error(exc, "target") from exc
        self._saved = checkpoint
        return checkpoint

    async def _store(self, key: str, checkpoint: Checkpoint | None) -> None:
        value = None if checkpoint is None else json.dumps({
            "topic": self.topic, "chunk": checkpoint.chunk, "position": checkpoint.position,
            "recordsRead": checkpoint.records_read, "recordsWritten": checkpoint.records_written,
            "extra": checkpoint.extra,
        }).encode()
        await bounded(self.producer.send_and_wait(CHECKPOINTS, value=value, key=key.encode(), partition=0),
                      "target", REQUEST_TIMEOUT_MS / 1000)

    @override
    async def finish(self, key: str, columns: list[str], last: Checkpoint) -> None:
        """Mark the checkpoint finished; the records are already out, and a re-run must not send them again."""
        await self._store(key, last.as_finished())

    async def abandon(self, key: str) -> None:
        """Records of a cancelled run stay in the topic (a log cannot take them back); forget the checkpoint."""
        try:
            await self._store(key, None)
        except Exception as exc:
            log.warning("could not forget the checkpoint of a cancelled run: %s", type(exc).__name__)

"""A bounded read for the consume loop: every partition from a start up to the end seen when reading began.

Audit replay reads `P.events` to a fixed end and must finish. What the brokers here lie about
(docs/brokers.md) shapes how: the end of a partition is the high-water mark its first fetch response
reports (`end_offsets()` is wrong on Tansu); a partition whose high-water mark never shows up is treated
as empty after a bounded wait; and `offsets_for_times()` is only a lower bound (Tansu answers 0 for a
future time), so the reader of a read from a time also skips records older than it. A read that stops
making progress fails (`BrokerUnavailable`) instead of waiting for ever.
"""

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from service.ports import BrokerUnavailable

log = logging.getLogger(__name__)

EMPTY_PARTITION_WAIT = 3.0
STALL_TIMEOUT = 30.0

R = TypeVar("R", bound="_Positioned")


class _Positioned(Protocol):
    offset: int


@dataclass(frozen=True)
class Bounds:
    """Read every partition from `since` (from its beginning when None) up to its end as first fetched, then
    stop: a group-less read that `ConsumeLoop.run()` returns from."""

    since: datetime | None = None
    empty_partition_wait: float = EMPTY_PARTITION_WAIT
    stall_timeout: float = STALL_TIMEOUT


class Extent:
    """Where a bounded read began and ends per partition, the ends learnt from the first fetches."""

    def __init__(self, topic: str, bounds: Bounds) -> None:
        self.topic = topic
        self.bounds = bounds
        self.topic_exists = True
        self.starts: dict[TopicPartition, int] = {}
        self.ends: dict[TopicPartition, int] = {}
        self.skipped: set[int] = set()
        """Partitions with nothing at or after `since`: never read."""
        self.pending: set[TopicPartition] = set()
        self._began = self._progress = time.monotonic()

    @property
    def end_offsets(self) -> dict[int, int]:
        """Partition → the offset the read stops at; -1 for a partition with nothing at or after `since`."""
        return {**{p: -1 for p in self.skipped}, **{tp.partition: end for tp, end in self.ends.items()}}

    @property
    def total(self) -> int | None:
        """How many records the read covers, once every partition's end is known."""
        if len(self.ends) < len(self.starts):
            return None
        return sum(end - self.starts[tp] for tp, end in self.ends.items())

    @property
    def done(self) -> bool:
        return not self.pending

    async def position(self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]) -> None:
        """Seek every partition to its start; one with nothing at or after `since` is paused and skipped."""
        since = self.bounds.since
        if since is None:
            await consumer.seek_to_beginning(*partitions)
            self.starts = {tp: await consumer.position(tp) for tp in partitions}
        else:
            found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
            for tp in partitions:
                if (at := found.get(tp)) is not None:
                    consumer.seek(tp, at.offset)
                    self.starts[tp] = at.offset
        for tp in partitions:
            if tp not in self.starts:
                consumer.pause(tp)
                self.skipped.add(tp.partition)
        self.pending = set(self.starts)
        self._began = self._progress = time.monotonic()

    def trim(self, consumer: AIOKafkaConsumer,
             fetched: Mapping[TopicPartition, Sequence[R]]) -> dict[TopicPartition, Sequence[R]]:
        """The fetched records before their partition's end, learning an end from the first high-water mark
        seen; partitions left with no record are dropped."""
        for tp in self.pending:
            if tp not in self.ends and (hw := consumer.highwater(tp)) is not None:
                self.ends[tp] = hw
        kept: dict[TopicPartition, Sequence[R]] = {}
        for tp, records in fetched.items():
            end = self.ends.get(tp)
            taken = records if end is None else [r for r in records if r.offset < end]
            if taken:
                kept[tp] = taken
        return kept

    async def settle(self, consumer: AIOKafkaConsumer, handled: bool) -> None:
        """After a fetch was handled (`handled`: records were, durably): pause partitions read to their end,
        give up on high-water marks that never come, and fail a read that stopped moving."""
        now = time.monotonic()
        if handled:
            self._progress = now
        for tp in list(self.pending):
            end = self.ends.get(tp)
            if end is not None and (self.starts[tp] >= end or await consumer.position(tp) >= end):
                self._finish(consumer, tp)
        wait = self.bounds.empty_partition_wait
        if now - self._began > wait and now - self._progress > wait:
            for tp in [t for t in self.pending if t not in self.ends]:
                log.info("no high-water mark for %s after %.0fs: treated as empty", tp, wait)
                self.ends[tp] = self.starts[tp]
                self._finish(consumer, tp)
        if self.pending and now - self._progress > self.bounds.stall_timeout:
            stuck = sorted([(tp.partition, await consumer.position(tp), self.ends.get(tp)) for tp in self.pending])
            raise BrokerUnavailable(f"no progress reading {self.topic} for {self.bounds.stall_timeout:.0f}s "
                                    f"(partition, position, end): {stuck}")

    def _finish(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        self.pending.discard(tp)
        consumer.pause(tp)

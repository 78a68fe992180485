"""Consumer lag per partition for the `batchsync_consumer_lag` gauge, sampled from what the client already
knows (the high-water mark each fetch reports, the position it holds): no request to the broker."""

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from service.observability.metrics import CONSUMER_LAG

EVERY_SECONDS = 1.0
"""At most one sample a second per loop: the gauge is read by scrapes many seconds apart."""
POSITION_WAIT = 0.05
"""A partition whose position is being reset or fetched is skipped rather than waited for."""


class LagSampler:
    """Samples a group's lag on its assigned partitions; a loop without a group (reply listener, audit
    replay) has no lag worth watching and samples nothing."""

    def __init__(self, group: str | None, topic: str) -> None:
        self._group = group
        self._topic = topic
        self._next = 0.0
        self._shown: set[TopicPartition] = set()

    async def sample(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if self._group is None or now < self._next:
            return
        self._next = now + EVERY_SECONDS
        assigned = consumer.assignment()
        for gone in self._shown - assigned:  # moved to another member: its lag is theirs to report now
            CONSUMER_LAG.remove(self._group, gone.topic, str(gone.partition))
        self._shown &= assigned
        for tp in assigned:
            end = consumer.highwater(tp)
            if end is None:
                continue
            try:
                async with asyncio.timeout(POSITION_WAIT):  # not wait_for: it can drop the loop's cancel (loop.py)
                    position = await consumer.position(tp)
            except Exception:  # no position yet, or the partition was just revoked: the next sample has it
                continue
            CONSUMER_LAG.labels(self._group, tp.topic, str(tp.partition)).set(max(end - position, 0))
            self._shown.add(tp)

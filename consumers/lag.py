"""Consumer lag per partition for the `batchsync_consumer_lag` gauge, sampled from what the client already
knows (the high-water mark each fetch reports, the position it holds): no request to the broker."""

import time

from aiokafka import AIOKafkaConsumer

from service.observability.metrics import CONSUMER_LAG

EVERY_SECONDS = 1.0
"""At most one sample a second per loop: the gauge is read by scrapes many seconds apart."""


class LagSampler:
    """Samples a group's lag on its assigned partitions; a loop without a group (reply listener, audit
    replay) has no lag worth watching and samples nothing."""

    def __init__(self, group: str | None, topic: str) -> None:
        self._group = group
        self._topic = topic
        self._next = 0.0

    async def sample(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if self._group is None or now < self._next:
            return
        self._next = now + EVERY_SECONDS
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:
                continue
            position = await consumer.position(tp)
            CONSUMER_LAG.labels(self._group, tp.topic, str(tp.partition)).set(max(end - position, 0))

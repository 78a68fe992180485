"""A publisher cancelled while its producer starts (shutdown during start-up, a caller's timeout) stops that
producer: left unstopped, aiokafka logs `Unclosed AIOKafkaProducer` when it is collected."""

import asyncio
from typing import Any

import pytest

from producers import publisher as publisher_module
from producers.publisher import Publisher
from service.config import Settings


class HangingProducer:
    def __init__(self) -> None:
        self.starting = asyncio.Event()
        self.stopped = False

    async def start(self) -> None:
        self.starting.set()
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self.stopped = True


async def test_a_publisher_cancelled_while_its_producer_starts_stops_that_producer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    producer = HangingProducer()

    async def ensure_topics(_: Settings) -> None:
        return None

    def new_producer(*_: Any) -> HangingProducer:
        return producer

    monkeypatch.setattr(publisher_module, "ensure_topics", ensure_topics)
    monkeypatch.setattr(publisher_module, "new_producer", new_producer)
    publisher = Publisher(Settings(kafka_bootstrap="hanging:9092", kafka_request_timeout_ms=60_000))
    task = asyncio.create_task(publisher.start())
    await asyncio.wait_for(producer.starting.wait(), 5)

    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert task.cancelled() and producer.stopped and not publisher.connected

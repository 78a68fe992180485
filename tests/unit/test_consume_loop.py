"""The consume loop's own rules, on a scripted consumer: what is committed, re-read, parked and sought."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition

from consumers import loop as loop_module
from consumers.loop import Batch, ConsumeLoop, PerBatch, PerRecord, Rejected, Subscription
from service.config import Settings

SETTINGS = Settings(kafka_bootstrap="scripted:9092", topic_prefix="loop.test")
TOPIC = "loop.test.in"
TP = TopicPartition(TOPIC, 0)


@dataclass
class Record:
    offset: int
    topic: str = TOPIC
    partition: int = 0
    key: bytes | None = None
    value: bytes | None = b"{}"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class ScriptedConsumer:
    """Returns the scripted fetches, then whatever a seek asks to re-read, then nothing."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records
        self.next_offset = 0
        self.listener: Any = None
        self.seeks: list[int | str] = []
        self.commits: list[dict[TopicPartition, int]] = []

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        if self.listener is not None:
            await self.listener.on_partitions_assigned([TP])

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[TopicPartition, list[Record]]:
        batch = [r for r in self.records if r.offset >= self.next_offset]
        if not batch:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        self.next_offset = batch[-1].offset + 1
        return {TP: batch}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append(offset)
        self.next_offset = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.seeks.append("beginning")
        self.next_offset = 0

    async def seek_to_end(self, *tps: TopicPartition) -> None:
        self.seeks.append("end")
        self.next_offset = len(self.records)

    async def position(self, tp: TopicPartition) -> int:
        return self.next_offset

    async def topics(self) -> set[str]:
        return {TOPIC}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, tps: list[TopicPartition]) -> None:
        return None

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    async def stop(self) -> None:
        return None


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"parked": []}

    def new_consumer(*_: Any, **__: Any) -> ScriptedConsumer:
        return state["consumer"]

    async def ensure_topics(_: Settings) -> None:
        return None

    async def send_to_dlq(_: Any, topic: str, record: Record, reason: str) -> None:
        state["parked"].append((topic, record.offset, reason))

    monkeypatch.setattr(loop_module, "new_consumer", new_consumer)
    monkeypatch.setattr(loop_module, "ensure_topics", ensure_topics)
    monkeypatch.setattr(loop_module, "pace_empty_fetches", lambda *_: None)
    monkeypatch.setattr(loop_module, "send_to_dlq", send_to_dlq)
    monkeypatch.setattr(loop_module, "FIRST_BACKOFF", 0.01)
    return state


async def run_until(loop: ConsumeLoop, done: Any, seconds: float = 5.0) -> None:
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(seconds):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def subscription(group_id: str | None = "g") -> Subscription:
    return Subscription(name="test", topic=TOPIC, group_id=group_id, fetch_max_wait_ms=10, poll_timeout_ms=20)


async def test_per_record_parks_the_rejected_retries_the_failed_and_commits_only_what_is_durable(scripted) -> None:
    consumer = scripted["consumer"] = ScriptedConsumer([Record(0), Record(1), Record(2)])
    handled: list[int] = []
    failures = {2: 1}

    async def handle(record: Record) -> None:
        if record.offset == 1:
            raise Rejected("not a request")
        if failures.get(record.offset):
            failures[record.offset] -= 1
            raise ConnectionError("database down")
        handled.append(record.offset)

    loop = ConsumeLoop(SETTINGS, subscription(), PerRecord(handle), publisher=object())  # type: ignore[arg-type]
    await run_until(loop, lambda: handled == [0, 2])
    assert scripted["parked"] == [(SETTINGS.topics.dlq, 1, "not a request")]
    assert consumer.seeks == [2]
    assert consumer.commits[0] == {TP: 2} and consumer.commits[-1] == {TP: 3}


async def test_per_batch_seeks_to_stored_offsets_and_applies_again_without_the_rejected(scripted) -> None:
    consumer = scripted["consumer"] = ScriptedConsumer([Record(n) for n in range(5)])
    applied: list[tuple[list[int], int]] = []

    async def apply(batch: Batch) -> None:
        offsets = [r.offset for records in batch.records.values() for r in records]
        if 3 in offsets:
            raise Rejected("forged", batch.records[TP][offsets.index(3)])  # type: ignore[arg-type]
        applied.append((offsets, batch.next_offsets[TP]))

    async def stored() -> dict[int, int]:
        return {0: 2}

    loop = ConsumeLoop(SETTINGS, subscription(), PerBatch(apply, stored), publisher=object())  # type: ignore[arg-type]
    await run_until(loop, lambda: bool(applied))
    assert consumer.seeks[0] == 2
    assert applied == [([2, 4], 5)]
    assert scripted["parked"] == [(SETTINGS.topics.dlq, 3, "forged")]
    assert consumer.commits == [{TP: 5}]


async def test_a_group_less_subscription_reads_from_the_end_and_commits_nothing(scripted) -> None:
    consumer = scripted["consumer"] = ScriptedConsumer([Record(0)])
    handled: list[int] = []

    async def handle(record: Record) -> None:
        handled.append(record.offset)

    loop = ConsumeLoop(SETTINGS, subscription(group_id=None), PerRecord(handle))
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(loop.ready.wait(), 5)
        consumer.records.append(Record(1))
        async with asyncio.timeout(5):
            while handled != [1]:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert consumer.seeks == ["end"] and consumer.commits == []

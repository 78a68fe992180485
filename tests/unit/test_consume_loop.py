"""The consume loop's own rules, on a scripted consumer: what is committed, re-read, parked and sought."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from consumers import loop as loop_module
from consumers.bounded import Bounds
from consumers.loop import Batch, ConsumeLoop, PerBatch, PerRecord, Rejected, Subscription
from service.config import Settings
from service.ports import BrokerUnavailable
from tests.support.scripted_log import TOPIC, LogConsumer, log_of
from tests.support.scripted_log import ScriptedRecord as Record

SETTINGS = Settings(kafka_bootstrap="scripted:9092", topic_prefix="loop.test")
TP = TopicPartition(TOPIC, 0)


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

    def highwater(self, tp: TopicPartition) -> int | None:
        return len(self.records)

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



class CancelledAsItCommits(ScriptedConsumer):
    """The loop's cancel lands in the very loop iteration its commit completes in (a test stopping the loop as
    soon as what it waited for is durable)."""

    task: "asyncio.Task[None] | None" = None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await super().commit(offsets)
        assert self.task is not None
        asyncio.get_running_loop().call_soon(self.task.cancel)


@pytest.mark.parametrize("per", ["record", "batch"])
async def test_a_cancel_arriving_as_a_commit_completes_stops_the_loop(scripted, per: str) -> None:
    """On Python 3.11 `asyncio.wait_for` returns the result and drops such a cancel: the loop ran on and
    whoever awaited it hung (tests awaiting a cancelled loop hung in full runs, where the timing lines up)."""
    consumer = scripted["consumer"] = CancelledAsItCommits([Record(0)])

    async def nothing(_: object) -> None:
        return None

    async def stored() -> dict[int, int]:
        return {}

    handling = PerRecord(nothing) if per == "record" else PerBatch(nothing, stored)
    task = consumer.task = asyncio.create_task(ConsumeLoop(SETTINGS, subscription(), handling).run())
    try:
        done, _ = await asyncio.wait({task}, timeout=5)
        assert task in done and task.cancelled(), "the cancel was lost: the loop still runs"
        assert consumer.commits == [{TP: 1}]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

# --- bounded reads (audit replay) ---


def bounded(bounds: Bounds | None = None, start_timeout: float | None = None) -> Subscription:
    return Subscription(name="audit", topic=TOPIC, group_id=None, fetch_max_wait_ms=10, poll_timeout_ms=20,
                        ensure_topics=False, bounds=bounds or Bounds(), start_timeout=start_timeout)


class Collected:
    def __init__(self, fail_first: int | None = None) -> None:
        self.records: list[tuple[int, int]] = []
        self.fail_first = fail_first

    async def __call__(self, batch: Batch) -> None:
        offsets = [(r.partition, r.offset) for rs in batch.records.values() for r in rs]
        if self.fail_first in [o for _, o in offsets]:
            self.fail_first = None
            raise ConnectionError("the reader is not ready")
        self.records.extend(offsets)


async def test_a_bounded_read_stops_at_the_high_water_marks_of_its_first_fetches(scripted) -> None:
    consumer = scripted["consumer"] = LogConsumer({0: log_of(0, 5), 1: log_of(1, 2), 2: []})
    collected = Collected(fail_first=2)

    loop = ConsumeLoop(SETTINGS, bounded(), PerBatch(collected))
    run = asyncio.create_task(loop.run())
    await asyncio.wait_for(loop.ready.wait(), 5)
    consumer.logs[0].append(Record(5))  # published after the read began: past its end
    await asyncio.wait_for(run, 5)

    assert sorted(collected.records) == [(0, n) for n in range(5)] + [(1, 0), (1, 1)]
    assert len(collected.records) == 7  # the failed fetch was read again, nothing twice
    assert loop.extent is not None and loop.extent.end_offsets == {0: 5, 1: 2, 2: 0}
    assert loop.extent.total == 7 and loop.extent.topic_exists
    assert consumer.paused == {TopicPartition(TOPIC, p) for p in (0, 1, 2)}


async def test_a_bounded_read_from_a_time_skips_partitions_with_nothing_after_it(scripted) -> None:
    scripted["consumer"] = LogConsumer({0: log_of(0, 3), 1: []})
    collected = Collected()
    since = datetime(2026, 1, 1, tzinfo=UTC)

    loop = ConsumeLoop(SETTINGS, bounded(Bounds(since)), PerBatch(collected))
    await asyncio.wait_for(loop.run(), 5)

    assert collected.records == [(0, 1), (0, 2)]
    assert loop.extent is not None and loop.extent.end_offsets == {0: 3, 1: -1} and loop.extent.total == 2


async def test_a_partition_without_a_high_water_mark_is_empty_after_the_wait(scripted) -> None:
    scripted["consumer"] = LogConsumer({0: log_of(0, 2), 1: []}, silent=frozenset({1}))
    collected = Collected()

    loop = ConsumeLoop(SETTINGS, bounded(Bounds(empty_partition_wait=0.2)), PerBatch(collected))
    await asyncio.wait_for(loop.run(), 5)

    assert collected.records == [(0, 0), (0, 1)]
    assert loop.extent is not None and loop.extent.end_offsets == {0: 2, 1: 0}


async def test_a_bounded_read_that_stops_moving_fails(scripted) -> None:
    scripted["consumer"] = LogConsumer({0: log_of(0, 2)})
    scripted["consumer"].marks[TopicPartition(TOPIC, 0)] = 9  # an end the log never reaches

    loop = ConsumeLoop(SETTINGS, bounded(Bounds(stall_timeout=0.3)), PerBatch(Collected()))
    with pytest.raises(BrokerUnavailable, match="no progress"):
        await asyncio.wait_for(loop.run(), 5)


async def test_a_bounded_read_fails_instead_of_reconnecting(scripted) -> None:
    consumer = scripted["consumer"] = LogConsumer({0: log_of(0, 4)})
    collected = Collected()

    async def handle(batch: Batch) -> None:
        await collected(batch)
        consumer.failure = KafkaConnectionError("broker gone")

    loop = ConsumeLoop(SETTINGS, bounded(), PerBatch(handle))
    with pytest.raises(BrokerUnavailable, match="broker gone"):
        await asyncio.wait_for(loop.run(), 5)
    assert collected.records == [(0, 0), (0, 1)] and consumer.starts == 1


async def test_a_bounded_read_gives_up_on_a_broker_that_does_not_start(scripted) -> None:
    consumer = scripted["consumer"] = LogConsumer({0: log_of(0, 1)}, failing_start=True)

    loop = ConsumeLoop(SETTINGS, bounded(start_timeout=0.5), PerBatch(Collected()))
    with pytest.raises(BrokerUnavailable, match="did not answer within"):
        await asyncio.wait_for(loop.run(), 5)
    assert consumer.starts > 1  # retried within the time it was given


async def test_a_bounded_read_of_a_missing_topic_is_empty(scripted) -> None:
    scripted["consumer"] = LogConsumer({})
    collected = Collected()

    loop = ConsumeLoop(SETTINGS, bounded(), PerBatch(collected))
    await asyncio.wait_for(loop.run(), 5)

    assert collected.records == []
    assert loop.extent is not None and not loop.extent.topic_exists and loop.extent.total == 0


def test_a_bounded_read_takes_no_group() -> None:
    with pytest.raises(ValueError, match="no consumer group"):
        Subscription(name="x", topic=TOPIC, group_id="g", fetch_max_wait_ms=10, bounds=Bounds())


class HangingStart(ScriptedConsumer):
    """A broker that accepts the connection and never answers: `start` waits until cancelled."""

    def __init__(self) -> None:
        super().__init__([])
        self.starting = asyncio.Event()
        self.stopped = False

    async def start(self) -> None:
        self.starting.set()
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self.stopped = True


async def test_a_loop_cancelled_while_its_consumer_starts_stops_that_consumer(scripted) -> None:
    consumer = scripted["consumer"] = HangingStart()  # unstopped, aiokafka logs `Unclosed AIOKafkaConsumer`
    task = asyncio.create_task(ConsumeLoop(SETTINGS, subscription(), PerRecord(lambda _: asyncio.sleep(0))).run())
    await asyncio.wait_for(consumer.starting.wait(), 5)

    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert task.cancelled() and consumer.stopped

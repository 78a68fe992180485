"""The consume loop after a crash or a lost log, on a scripted consumer: a process reading every partition
alone keeps its positions in its own store, and a position past the end of the log restarts the partition
from its earliest offset with a WARNING naming the gap."""

import logging
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from consumers.loop import ConsumeLoop, PerBatch, PerRecord
from tests.support.scripted_log import TOPIC
from tests.support.scripted_log import ScriptedRecord as Record
from tests.unit.test_consume_loop import SETTINGS, TP, ScriptedConsumer, run_until, scripted, subscription

__all__ = ["scripted"]  # the fixture, used by name

SOLO = SETTINGS.model_copy(update={"partition_assignment": "all"})


class MemoryOffsets:
    def __init__(self, stored: dict[int, int]) -> None:
        self.stored = dict(stored)
        self.saves: list[dict[int, int]] = []

    async def load(self) -> Mapping[int, int]:
        return dict(self.stored)

    async def save(self, offsets: Mapping[int, int], marks: Mapping[int, Any]) -> None:
        self.stored.update(offsets)
        self.saves.append(dict(offsets))


class NoGroupConsumer(ScriptedConsumer):
    """Refuses what only a group member may do: a solo loop must neither subscribe nor commit."""

    def subscribe(self, topics: list[str], listener: Any) -> None:
        raise AssertionError("a process reading every partition alone must not join a group")

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        raise AssertionError("a process reading every partition alone keeps its offsets in its store")


class OutOfRangeConsumer(ScriptedConsumer):
    """Like Kafka and noida-db: a fetch beyond the end raises OffsetOutOfRange (auto reset is off)."""

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[TopicPartition, list[Record]]:
        if self.next_offset > len(self.records):
            raise OffsetOutOfRangeError({TP: self.next_offset})
        return await super().getmany(timeout_ms=timeout_ms, max_records=max_records)


async def test_a_solo_loop_assigns_every_partition_itself_and_keeps_its_offsets_in_its_store(scripted) -> None:
    consumer = scripted["consumer"] = NoGroupConsumer([Record(n) for n in range(5)])
    offsets = MemoryOffsets({0: 2})
    handled: list[int] = []
    assigned: list[set[TopicPartition]] = []

    async def handle(record: Record) -> None:
        handled.append(record.offset)

    loop = ConsumeLoop(SOLO, subscription(), PerRecord(handle, offsets),
                       on_assigned=lambda tps: assigned.append(set(tps)))
    await run_until(loop, lambda: offsets.stored == {0: 5})
    assert loop.solo
    assert handled == [2, 3, 4], "it resumes at the stored offset"
    assert consumer.seeks == [2]
    assert assigned == [{TP}]


async def test_a_solo_per_record_loop_needs_somewhere_to_keep_its_offsets() -> None:
    async def handle(record: Record) -> None:
        return None

    with pytest.raises(ValueError, match="OffsetStore"):
        ConsumeLoop(SOLO, subscription(), PerRecord(handle))


async def test_a_position_past_the_high_water_mark_restarts_the_partition_from_its_beginning(scripted, caplog) -> None:
    """Tansu after a restart: the stored offset 9 lies beyond a recreated log of 3 records; fetches return
    nothing for ever, so the loop must notice it from the high-water mark."""
    consumer = scripted["consumer"] = ScriptedConsumer([Record(n) for n in range(3)])
    applied: list[list[int]] = []
    stored = {0: 9}

    async def apply(batch: Any) -> None:
        applied.append([r.offset for rs in batch.records.values() for r in rs])
        stored.update({tp.partition: offset for tp, offset in batch.next_offsets.items()})

    async def load() -> Mapping[int, int]:
        return dict(stored)

    caplog.set_level(logging.WARNING, logger="consumers.loop")
    loop = ConsumeLoop(SOLO, subscription(), PerBatch(apply, load))
    await run_until(loop, lambda: stored == {0: 3})
    assert applied == [[0, 1, 2]]
    assert consumer.seeks == [9, "beginning"]
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"{TOPIC}[0] ends at 3 but we were at offset 9" in warning
    assert "gap: 6 offsets (3..8)" in warning


async def test_offset_out_of_range_restarts_the_partition_from_its_beginning(scripted, caplog) -> None:
    consumer = scripted["consumer"] = OutOfRangeConsumer([Record(n) for n in range(2)])
    offsets = MemoryOffsets({0: 7})
    handled: list[int] = []

    async def handle(record: Record) -> None:
        handled.append(record.offset)

    caplog.set_level(logging.WARNING, logger="consumers.loop")
    await run_until(ConsumeLoop(SOLO, subscription(), PerRecord(handle, offsets)), lambda: offsets.stored == {0: 2})
    assert handled == [0, 1]
    assert consumer.seeks == [7, "beginning"]
    assert any("we were at offset 7" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


async def test_a_group_loop_restarts_past_the_end_too_and_commits_the_new_offsets(scripted, caplog) -> None:
    """With Kafka's group management (several processes) the same check holds; the broker keeps the offsets."""
    consumer = scripted["consumer"] = ScriptedConsumer([Record(n) for n in range(2)])
    consumer.next_offset = 5  # where the group's committed offset left it before the topic was recreated
    handled: list[int] = []

    async def handle(record: Record) -> None:
        handled.append(record.offset)

    caplog.set_level(logging.WARNING, logger="consumers.loop")
    await run_until(ConsumeLoop(SETTINGS, subscription(), PerRecord(handle)), lambda: {TP: 2} in consumer.commits)
    assert handled == [0, 1]
    assert "beginning" in consumer.seeks

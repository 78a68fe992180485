"""The consume loop checks that a topic is still the log its kept positions were read from, on a scripted consumer:
a topic recreated (a memory-only broker restarted, a topic deleted and created again) that has grown past the
stored position is read again from its start with a WARNING, whether the loop starts on it or it is replaced
under a running loop; the same log is read on from the stored position."""

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka.errors import NoOffsetForPartitionError

from consumers import loop as loop_module
from consumers.loop import Batch, ConsumeLoop, PerBatch, PerRecord, mark_of
from service.positions import Mark, Position
from tests.support.scripted_log import TOPIC
from tests.support.scripted_log import ScriptedRecord as Record
from tests.unit.test_consume_loop import SETTINGS, TP, ScriptedConsumer, run_until, scripted, subscription

__all__ = ["scripted"]  # the fixture, used by name

SOLO = SETTINGS.model_copy(update={"partition_assignment": "all"})


def log(name: str, count: int) -> list[Record]:
    """A log whose records differ from every other log's at the same offsets (as a recreated topic's do)."""
    return [Record(n, value=name.encode()) for n in range(count)]


class Projection:
    """A PerBatch handler with its positions kept beside it, as the projector keeps them in PostgreSQL."""

    def __init__(self, stored: dict[int, Position]) -> None:
        self.stored = dict(stored)
        self.applied: list[tuple[int, bytes | None]] = []

    async def apply(self, batch: Batch) -> None:
        self.applied += [(r.offset, r.value) for rs in batch.records.values() for r in rs]
        self.stored.update(batch.positions())

    async def load(self) -> Mapping[int, Position]:
        return dict(self.stored)


class MarkedOffsets:
    def __init__(self, stored: dict[int, Position]) -> None:
        self.stored = dict(stored)

    async def load(self) -> Mapping[int, Position]:
        return dict(self.stored)

    async def save(self, offsets: Mapping[int, int], marks: Mapping[int, Mark]) -> None:
        self.stored.update({p: Position(o, marks.get(p)) for p, o in offsets.items()})


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("solo", [True, False], ids=["all", "group"])
async def test_a_recreated_topic_grown_past_the_stored_position_is_read_from_its_start(scripted, caplog,
                                                                                        solo) -> None:
    old = log("old", 5)
    consumer = scripted["consumer"] = ScriptedConsumer(log("new", 8))
    projection = Projection({0: Position(5, mark_of(old[4]))})

    caplog.set_level(logging.WARNING, logger="consumers.loop")
    loop = ConsumeLoop(SOLO if solo else SETTINGS, subscription(), PerBatch(projection.apply, projection.load))
    await run_until(loop, lambda: projection.stored[0].next_offset == 8 and len(projection.applied) == 8)

    assert projection.applied == [(n, b"new") for n in range(8)], "nothing of the new log handled before its start"
    assert projection.stored[0].mark is not None and projection.stored[0].mark.offset in range(8)
    assert consumer.seeks[0] == 5 and "beginning" in consumer.seeks
    [warning] = warnings(caplog)
    assert f"{TOPIC}[0] is not the log we were reading: offset 4 holds another record" in warning
    assert "recreated" in warning and "gap" in warning


async def test_the_same_log_is_read_on_from_the_stored_position(scripted, caplog) -> None:
    records = log("same", 8)
    consumer = scripted["consumer"] = ScriptedConsumer(records)
    projection = Projection({0: Position(5, mark_of(records[4]))})

    caplog.set_level(logging.WARNING, logger="consumers.loop")
    loop = ConsumeLoop(SOLO, subscription(), PerBatch(projection.apply, projection.load))
    await run_until(loop, lambda: projection.stored[0].next_offset == 8)

    assert projection.applied == [(n, b"same") for n in (5, 6, 7)]
    assert projection.stored[0] == Position(8, mark_of(records[7])), "the mark moves on to the last record read"
    assert consumer.seeks == [5, 4, 8], "to the stored offset, to the mark to read it back, past what was fetched"
    assert warnings(caplog) == []


async def test_a_topic_recreated_under_a_running_loop_is_noticed_at_the_next_check(scripted, caplog,
                                                                                  monkeypatch) -> None:
    """No assignment happens (one process reading every partition, its broker restarted): the periodic check
    finds another record at the mark and the records the loop skipped are read after all."""
    monkeypatch.setattr(loop_module, "IDENTITY_CHECK_SECONDS", 0.2)
    consumer = scripted["consumer"] = ScriptedConsumer(log("old", 3))
    offsets = MarkedOffsets({})
    handled: list[tuple[int, bytes | None]] = []

    async def handle(record: Any) -> None:
        handled.append((record.offset, record.value))

    caplog.set_level(logging.WARNING, logger="consumers.loop")
    task = asyncio.create_task(ConsumeLoop(SOLO, subscription(), PerRecord(handle, offsets)).run())
    try:
        async with asyncio.timeout(5):
            while len(handled) < 3 or 0 not in offsets.stored:
                await asyncio.sleep(0.01)
            consumer.records = log("new", 6)  # recreated, and grown past our position 3 before the next fetch
            while not {(n, b"new") for n in range(6)} <= set(handled) or offsets.stored[0].next_offset != 6:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert [o for o, v in handled if v == b"new"].count(0) == 1
    assert any("is not the log we were reading" in w for w in warnings(caplog))
    mark = offsets.stored[0].mark
    assert mark is not None and mark == mark_of(consumer.records[mark.offset]), "the stored mark is of the new log"


async def test_a_mark_past_the_end_of_the_log_restarts_the_partition(scripted, caplog) -> None:
    """A recreated log shorter than the mark's offset, but not than the stored position's check: nothing there."""
    scripted["consumer"] = ScriptedConsumer(log("new", 3))
    projection = Projection({0: Position(2, Mark(6, "a record of the old log"))})

    caplog.set_level(logging.WARNING, logger="consumers.loop")
    loop = ConsumeLoop(SOLO, subscription(), PerBatch(projection.apply, projection.load))
    await run_until(loop, lambda: projection.stored[0].next_offset == 3 and len(projection.applied) == 3)

    assert projection.applied == [(n, b"new") for n in range(3)]
    assert any("offset 6 holds no record now" in w for w in warnings(caplog))


async def test_a_position_without_a_mark_is_trusted_and_marked_from_then_on(scripted, caplog) -> None:
    """Rows stored before marks existed (or by an audit rebuild) are read on; the next store carries a mark."""
    records = log("same", 4)
    scripted["consumer"] = ScriptedConsumer(records)
    offsets = MarkedOffsets({0: Position(2)})
    handled: list[int] = []

    async def handle(record: Any) -> None:
        handled.append(record.offset)

    caplog.set_level(logging.WARNING, logger="consumers.loop")
    await run_until(ConsumeLoop(SOLO, subscription(), PerRecord(handle, offsets)),
                    lambda: offsets.stored[0].next_offset == 4)
    assert handled == [2, 3]
    assert offsets.stored[0].mark == mark_of(records[2])
    assert warnings(caplog) == []


class SlowToReadBack(ScriptedConsumer):
    """Does not answer the first reads at `offset` (a broker that is away), then does."""

    def __init__(self, records: list[Record], offset: int, silent_reads: int) -> None:
        super().__init__(records)
        self.offset = offset
        self.silent_reads = silent_reads

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[Any, list[Record]]:
        if self.next_offset == self.offset and self.silent_reads > 0:
            self.silent_reads -= 1
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        return await super().getmany(timeout_ms=timeout_ms, max_records=max_records)


async def test_records_are_held_back_until_the_mark_is_read_back(scripted, caplog, monkeypatch) -> None:
    """A check that gets no answer in time neither trusts nor resets: the fetched records wait, the check is
    tried again."""
    monkeypatch.setattr(loop_module, "COMMIT_TIMEOUT", 0.3)
    records = log("same", 8)
    consumer = scripted["consumer"] = SlowToReadBack(records, offset=4, silent_reads=10)
    projection = Projection({0: Position(5, mark_of(records[4]))})

    caplog.set_level(logging.WARNING, logger="consumers.loop")
    loop = ConsumeLoop(SOLO, subscription(), PerBatch(projection.apply, projection.load))
    await run_until(loop, lambda: projection.stored[0].next_offset == 8)

    assert consumer.silent_reads == 0, "the first checks got no answer"
    assert projection.applied == [(n, b"same") for n in (5, 6, 7)], "applied once, after the check"
    assert warnings(caplog) == []


class CommittedNothing(ScriptedConsumer):
    """A group partition with no committed offset at the broker (Tansu restarted): aiokafka may raise
    NoOffsetForPartition even after the assignment hook sought it, when it asked before the seek."""

    def __init__(self, records: list[Record]) -> None:
        super().__init__(records)
        self.raised = False

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[Any, list[Record]]:
        if not self.raised:
            self.raised = True
            raise NoOffsetForPartitionError(TP)
        return await super().getmany(timeout_ms=timeout_ms, max_records=max_records)


async def test_a_partition_the_broker_has_no_offset_for_resumes_from_the_stored_one(scripted) -> None:
    records = log("same", 5)
    consumer = scripted["consumer"] = CommittedNothing(records)
    projection = Projection({0: Position(3, mark_of(records[2]))})

    loop = ConsumeLoop(SETTINGS, subscription(), PerBatch(projection.apply, projection.load))
    await run_until(loop, lambda: projection.stored[0].next_offset == 5)

    assert consumer.raised
    assert projection.applied == [(3, b"same"), (4, b"same")], "not from the beginning"


class RebalancedDuringReadBack(ScriptedConsumer):
    """The group rebalances while the loop reads its mark back: the assignment hook seeks to the stored offset, and
    the same fetch then drains the records from there."""

    def __init__(self, records: list[Record], mark_offset: int) -> None:
        super().__init__(records)
        self.mark_offset = mark_offset
        self.rebalanced = False

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[Any, list[Record]]:
        if self.next_offset == self.mark_offset and not self.rebalanced:
            self.rebalanced = True
            await self.listener.on_partitions_assigned([TP])
        return await super().getmany(timeout_ms=timeout_ms, max_records=max_records)


async def test_a_rebalance_during_the_check_positions_the_partitions_from_the_store_again(scripted) -> None:
    records = log("same", 8)
    consumer = scripted["consumer"] = RebalancedDuringReadBack(records, mark_offset=4)
    projection = Projection({0: Position(5, mark_of(records[4]))})

    loop = ConsumeLoop(SETTINGS, subscription(), PerBatch(projection.apply, projection.load))
    await run_until(loop, lambda: projection.stored[0].next_offset == 8)

    assert consumer.rebalanced
    assert projection.applied == [(n, b"same") for n in (5, 6, 7)], "nothing the read-back drained is skipped"

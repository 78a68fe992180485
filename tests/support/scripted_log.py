"""Scripted stand-ins for aiokafka's consumer and records, for unit tests of the consume loop and its users."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

TOPIC = "loop.test.in"


@dataclass
class ScriptedRecord:
    offset: int
    topic: str = TOPIC
    partition: int = 0
    key: bytes | None = None
    value: bytes | None = b"{}"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class LogConsumer:
    """Partitions of a scripted log: a fetch returns every unpaused partition's records from its position and
    reports its high-water mark (the log's length when that partition was first fetched, unless `silent`)."""

    def __init__(self, logs: dict[int, list[ScriptedRecord]], *, topic: str = TOPIC,
                 silent: frozenset[int] = frozenset(), failing_start: bool = False) -> None:
        self.logs = logs
        self.topic = topic
        self.silent = silent
        self.failing_start = failing_start
        self.positions: dict[TopicPartition, int] = {}
        self.marks: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.starts = 0
        self.failure: Exception | None = None

    async def start(self) -> None:
        self.starts += 1
        if self.failing_start:
            raise OSError("connection refused")

    async def stop(self) -> None:
        return None

    async def topics(self) -> set[str]:
        return {self.topic} if self.logs else set()

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.logs) or None

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = {tp: 0 for tp in tps}

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.positions[tp] = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def offsets_for_times(self, times: dict[TopicPartition, int]) -> dict[TopicPartition, Any]:
        """A lower bound, as Tansu answers: offset 1 of each non-empty partition."""
        return {tp: (type("At", (), {"offset": 1})() if self.logs[tp.partition] else None) for tp in times}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.marks.get(tp)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        raise AssertionError("a bounded read commits nothing")

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[TopicPartition, list[ScriptedRecord]]:
        if self.failure is not None:
            raise self.failure
        fetched: dict[TopicPartition, list[ScriptedRecord]] = {}
        for tp, position in self.positions.items():
            if tp in self.paused:
                continue
            if tp.partition not in self.silent:
                self.marks.setdefault(tp, len(self.logs[tp.partition]))
            records = [r for r in self.logs[tp.partition] if r.offset >= position][:2]
            if records:
                fetched[tp] = records
                self.positions[tp] = records[-1].offset + 1
        if not fetched:
            await asyncio.sleep(timeout_ms / 1000)
        return fetched


def log_of(partition: int, count: int, topic: str = TOPIC) -> list[ScriptedRecord]:
    return [ScriptedRecord(n, topic=topic, partition=partition) for n in range(count)]

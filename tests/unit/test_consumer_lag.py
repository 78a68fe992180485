"""The consumer-lag gauge: end minus position per assigned partition, at most once a second, never waiting
for a position, and a partition that moved to another member stops being reported here."""

import asyncio

import pytest
from aiokafka import TopicPartition

from consumers import lag
from consumers.lag import LagSampler
from service.observability.metrics import CONSUMER_LAG


class FakeConsumer:
    """What the sampler reads of aiokafka's consumer: assignment, high-water marks and positions."""

    def __init__(self, ends: dict[int, int | None], positions: dict[int, int | None]) -> None:
        self.ends, self.positions = ends, positions

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", p) for p in self.ends}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends[tp.partition]

    async def position(self, tp: TopicPartition) -> int:
        position = self.positions[tp.partition]
        if position is None:
            await asyncio.sleep(3600)  # aiokafka waits until the position is known
        return position


def shown(group: str) -> dict[str, float]:
    return {s.labels["partition"]: s.value for metric in CONSUMER_LAG.collect() for s in metric.samples
            if s.labels["group"] == group}


@pytest.fixture(autouse=True)
def every_time(monkeypatch) -> None:
    monkeypatch.setattr(lag, "EVERY_SECONDS", 0.0)


async def test_lag_is_end_minus_position_and_a_missing_position_is_skipped_not_awaited() -> None:
    sampler = LagSampler("g1", "t")
    consumer = FakeConsumer({0: 10, 1: 5, 2: None, 3: 7}, {0: 4, 1: 5, 2: 0, 3: None})
    async with asyncio.timeout(1):
        await sampler.sample(consumer)  # type: ignore[arg-type]
    assert shown("g1") == {"0": 6.0, "1": 0.0}


async def test_a_partition_that_moved_away_is_no_longer_reported() -> None:
    sampler = LagSampler("g2", "t")
    await sampler.sample(FakeConsumer({0: 10, 1: 10}, {0: 0, 1: 0}))  # type: ignore[arg-type]
    await sampler.sample(FakeConsumer({1: 10}, {1: 3}))  # type: ignore[arg-type]
    assert shown("g2") == {"1": 7.0}


async def test_a_reader_without_a_group_and_a_second_sample_within_the_interval_report_nothing(monkeypatch) -> None:
    await LagSampler(None, "t").sample(FakeConsumer({0: 10}, {0: 0}))  # type: ignore[arg-type]
    monkeypatch.setattr(lag, "EVERY_SECONDS", 60.0)
    sampler = LagSampler("g3", "t")
    await sampler.sample(FakeConsumer({0: 10}, {0: 0}))  # type: ignore[arg-type]
    await sampler.sample(FakeConsumer({0: 10}, {0: 9}))  # type: ignore[arg-type]
    assert shown("g3") == {"0": 10.0}

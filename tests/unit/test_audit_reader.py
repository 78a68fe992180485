"""The audit reader over a scripted log: it hands replay what the bounded read fetched, reads only a few
fetches ahead, and turns a log it cannot read into `LogUnavailable`."""

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from consumers import audit_reader
from consumers import loop as loop_module
from consumers.audit_reader import EventLogReader
from service.audit.replay import LogUnavailable
from service.config import Settings
from tests.support.scripted_log import LogConsumer, log_of

SETTINGS = Settings(kafka_bootstrap="scripted:9092", topic_prefix="reader.test", kafka_request_timeout_ms=500)
TOPIC = SETTINGS.topics.events


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {}
    monkeypatch.setattr(loop_module, "new_consumer", lambda *_, **__: state["consumer"])
    monkeypatch.setattr(loop_module, "pace_empty_fetches", lambda *_: None)
    monkeypatch.setattr(loop_module, "FIRST_BACKOFF", 0.01)
    monkeypatch.setattr(audit_reader, "POLL_TIMEOUT_MS", 20)
    return state


async def read_all(reader: EventLogReader) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) async for records in reader.batches() for r in records]


async def test_every_record_up_to_the_end_in_fetches(scripted) -> None:
    scripted["consumer"] = LogConsumer({0: log_of(0, 5, TOPIC), 1: log_of(1, 1, TOPIC)}, topic=TOPIC)
    async with EventLogReader(SETTINGS) as reader:
        assert reader.topic_exists
        read = await asyncio.wait_for(read_all(reader), 5)
    assert sorted(read) == [(0, n) for n in range(5)] + [(1, 0)]
    assert reader.end_offsets == {0: 5, 1: 1} and reader.total == 6


async def test_it_reads_only_a_few_fetches_ahead_of_replay(scripted) -> None:
    consumer = scripted["consumer"] = LogConsumer({0: log_of(0, 1000, TOPIC)}, topic=TOPIC)
    async with EventLogReader(SETTINGS) as reader:
        await asyncio.sleep(0.2)  # replay is busy elsewhere
        fetched = consumer.positions[TopicPartition(TOPIC, 0)]
        assert fetched <= 2 * (audit_reader.QUEUED_FETCHES + 1)  # two records a scripted fetch
        assert len(await asyncio.wait_for(read_all(reader), 5)) == 1000


async def test_a_missing_topic_is_an_empty_log(scripted) -> None:
    scripted["consumer"] = LogConsumer({}, topic=TOPIC)
    async with EventLogReader(SETTINGS) as reader:
        assert not reader.topic_exists
        assert await asyncio.wait_for(read_all(reader), 5) == [] and reader.total == 0


async def test_an_unreachable_broker_is_log_unavailable_soon(scripted) -> None:
    scripted["consumer"] = LogConsumer({0: []}, topic=TOPIC, failing_start=True)
    started = asyncio.get_running_loop().time()
    with pytest.raises(LogUnavailable, match="did not answer within"):
        async with EventLogReader(SETTINGS):
            pass
    assert asyncio.get_running_loop().time() - started < 2 * SETTINGS.kafka_request_timeout_ms / 1000 + 0.5


async def test_a_broker_failing_mid_read_ends_the_records_with_log_unavailable(scripted) -> None:
    consumer = scripted["consumer"] = LogConsumer({0: log_of(0, 100, TOPIC)}, topic=TOPIC)
    read: list[int] = []
    async with EventLogReader(SETTINGS) as reader:
        with pytest.raises(LogUnavailable, match="broker gone"):
            async for records in reader.batches():
                read.extend(r.offset for r in records)
                consumer.failure = KafkaConnectionError("broker gone")
    assert read == sorted(set(read)) and 0 < len(read) < 100

"""The Kafka connectors on the real broker: bounded reads that end at the high-water marks seen at the
start, runs that continue where the last successful one stopped, empty partitions, records that are not
JSON objects, no auto-created topics, fast failures, the at-least-once window of the target, and the
live connection test through the API."""

import dataclasses
import json
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from schemas.api import SourceSpec
from service.connectors.kafka.client import check_connection
from service.connectors.kafka.source import KafkaSource
from service.connectors.kafka.target import KafkaTarget
from service.sync.errors import ConfigInvalid, ConnectRefused, ConnectTimeout, SourceFailed, TableMissing
from service.sync.model import Endpoint
from tests.contract.cases.kafka import create_topic, produce, read_topic
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.harness import FIELDS, Context, make_rows, normalized, spec_for, sync
from tests.support.api import api_client, api_settings, asyncpg_url, create_connection
from tests.support.builders import unique
from tests.support.http_api import json_record
from tests.support.loopback import closed_port, silent_server


@pytest.fixture
def reference(target_dsn, tmp_path, broker):
    return PostgresCase(Context(pg_dsn=target_dsn, tmp_dir=tmp_path, kafka_bootstrap=broker.bootstrap))


def kafka(broker, **params) -> Endpoint:
    return Endpoint(type="kafka", params={"bootstrap": broker.bootstrap} | params)


def values(rows):
    return [json.dumps(json_record(r), ensure_ascii=False).encode() for r in rows]


async def seed(broker, rows, partitions=3) -> str:
    topic = unique("topic")
    await create_topic(broker.bootstrap, topic, partitions)
    await produce(broker.bootstrap, topic, values(rows), [str(r["id"]).encode() for r in rows])
    return topic


async def topics(broker) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


async def test_each_run_reads_what_arrived_since_the_last_successful_one(broker, reference):
    first, second = make_rows(900), make_rows(300, start=901)
    topic = await seed(broker, first)
    table = unique("tgt")
    target = await reference.create(table)
    source = (kafka(broker), SourceSpec(table=topic))

    result = await sync(spec_for(source, target, table, chunk_size=400))
    assert result.records_written == 900 and result.chunks == 3
    assert sum(result.high_water_mark["offsets"].values()) == 900

    await produce(broker.bootstrap, topic, values(second), [None] * len(second))
    again = await sync(spec_for(source, target, table, chunk_size=400, high_water_mark=result.high_water_mark))
    assert again.records_written == 300
    idle = await sync(spec_for(source, target, table, high_water_mark=again.high_water_mark))
    assert idle.records_written == 0
    assert normalized(await reference.read(target, table), FIELDS) == normalized(first + second, FIELDS)


async def test_a_new_batch_starts_at_the_consumer_groups_committed_offsets(broker, reference):
    topic = await seed(broker, make_rows(200))
    source = (kafka(broker, groupId=unique("group")), SourceSpec(table=topic))
    table = unique("tgt")
    target = await reference.create(table)
    await sync(spec_for(source, target, table))  # commits the group's offsets as a courtesy at the end
    await produce(broker.bootstrap, topic, values(make_rows(50, start=201)), [None] * 50)

    other = unique("tgt")
    result = await sync(spec_for(source, await reference.create(other), other))  # no stored offsets
    assert result.records_written == 50


async def test_records_produced_during_a_run_wait_for_the_next_one(broker, reference):
    topic = await seed(broker, make_rows(1000), partitions=1)
    table = unique("tgt")
    target = await reference.create(table)
    source = KafkaSource(kafka(broker), SourceSpec(table=topic), 2.0)
    async with source:
        await source.describe()
        position = await source.start(None)
        await produce(broker.bootstrap, topic, values(make_rows(100, start=1001)), [None] * 100)
        assert position["stop"] == {"0": 1000}
    result = await sync(spec_for((kafka(broker), SourceSpec(table=topic)), target, table, chunk_size=300))
    assert result.records_written == 1100  # a new run sees the new high-water mark


async def test_empty_partitions_end_the_run_after_a_bounded_wait(broker, reference):
    topic = unique("topic")
    await create_topic(broker.bootstrap, topic, 4)
    await produce(broker.bootstrap, topic, values(make_rows(5)), [None] * 5)  # round robin may leave some empty
    table = unique("tgt")
    target = await reference.create(table)
    started = time.monotonic()
    result = await sync(spec_for((kafka(broker), SourceSpec(table=topic)), target, table))
    assert result.records_written == 5
    assert time.monotonic() - started < 5


async def test_records_that_are_not_json_objects_fail_the_run_or_are_skipped(broker, reference):
    topic = await seed(broker, make_rows(20), partitions=1)
    await produce(broker.bootstrap, topic, [b"not json", b"[1, 2]", None], [None, None, b"7"])
    table = unique("tgt")
    target = await reference.create(table)
    with pytest.raises(SourceFailed) as error:
        await sync(spec_for((kafka(broker), SourceSpec(table=topic)), target, table))
    assert error.value.reason == f"主题记录不是 JSON 对象：{topic} 分区 0 偏移 20"

    skipping = (kafka(broker, onInvalid="skip"), SourceSpec(table=topic))
    other = unique("tgt")
    result = await sync(spec_for(skipping, await reference.create(other), other))
    assert result.records_written == 20


async def test_a_missing_topic_is_named_and_not_created(broker, reference):
    table = unique("tgt")
    target = await reference.create(table)
    missing = unique("nothing")
    with pytest.raises(TableMissing) as error:
        await sync(spec_for((kafka(broker), SourceSpec(table=missing)), target, table))
    assert error.value.reason == f"源表不存在：{missing}"
    assert missing not in await topics(broker)


async def test_pinned_topic_wins_over_the_table(broker, reference):
    rows = make_rows(30)
    topic = await seed(broker, rows)
    table = unique("tgt")
    target = await reference.create(table)
    result = await sync(spec_for((kafka(broker, topic=topic), SourceSpec(table="label_only")), target, table))
    assert result.records_written == 30


async def test_unreachable_bootstrap_fails_within_the_connect_timeout(broker):
    started = time.monotonic()
    with pytest.raises(ConnectRefused):
        await check_connection(Endpoint(type="kafka", params={"bootstrap": f"127.0.0.1:{closed_port()}"}), 1.0)
    with silent_server() as port:
        with pytest.raises(ConnectTimeout):
            await check_connection(Endpoint(type="kafka", params={"bootstrap": f"127.0.0.1:{port}"}), 1.0)
    assert time.monotonic() - started < 3


async def test_target_refuses_overwrite_and_upsert(broker, reference):
    topic = await seed(broker, [])
    source = await reference.seed(unique("src"), make_rows(3))
    for mode in ("overwrite", "upsert"):
        with pytest.raises(ConfigInvalid) as error:
            await sync(spec_for(source, kafka(broker), topic, mode=mode))
        assert error.value.reason == f"目标类型 kafka 不支持 {mode} 模式"


async def test_target_keys_records_and_the_at_least_once_window(broker, reference):
    rows = make_rows(250)
    table = unique("src")
    source = await reference.seed(table, rows)
    topic = unique("out")
    await create_topic(broker.bootstrap, topic, 3)
    spec = spec_for(source, kafka(broker, key="id"), topic, chunk_size=100)

    class Killed(Exception):
        pass

    class DiesBeforeCheckpoint(KafkaTarget):
        """Stands for a worker killed after chunk 2's acks and before its checkpoint was stored."""

        async def _store(self, key, checkpoint):
            if checkpoint is not None and checkpoint.chunk == 2:
                raise Killed
            await super()._store(key, checkpoint)

    from service.connectors import registry

    kind = registry.KINDS["kafka"]
    registry.KINDS["kafka"] = dataclasses.replace(kind, target=DiesBeforeCheckpoint)
    try:
        with pytest.raises(Killed):
            await sync(spec)
    finally:
        registry.KINDS["kafka"] = kind
    result = await sync(spec)

    assert result.resumed_from_chunk == 1 and result.records_written == 250
    written = await read_topic(broker.bootstrap, topic)
    assert len(written) == 350  # chunk 2 twice: at-least-once, never a loss
    assert normalized(list({r["id"]: r for r in written}.values()), FIELDS) == normalized(rows, FIELDS)


async def test_connection_test_endpoint(broker, state_dsn):
    topic = await seed(broker, [])
    async with api_client(api_settings(asyncpg_url(state_dsn), connect_timeout_seconds=1)) as client:
        cases = {
            "连接成功": {"bootstrap": broker.bootstrap, "topic": topic},
            "连接失败：源表不存在：absent_topic": {"bootstrap": broker.bootstrap, "topic": "absent_topic"},
            "连接失败：连接被拒绝": {"bootstrap": f"127.0.0.1:{closed_port()}"},
        }
        for expected, params in cases.items():
            created = await create_connection(client, type="kafka", url=None, params=params)
            response = await client.post(f"/integration/connection/{created['id']}/test")
            assert response.json()["message"] == expected, response.text
    assert "absent_topic" not in await topics(broker)

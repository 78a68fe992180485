"""Crash recovery on the bus, with real brokers killed and restarted (issue 14): fault scripts kept as tests.

- A process that reads every partition alone (`up`'s shape) comes back after SIGKILL on both test brokers;
  on noida-db a consumer group would never assign partitions to its replacement.
- A memory-only broker (Tansu) restarted between runs: the stored offsets lie past the new end of every topic;
  the consumers notice, start again from the earliest offset, and every later run reaches the history.
- A recreated events topic that has grown past the projector's stored offsets before it looks (Tansu restarted,
  a topic deleted and created again on noida-db): the stored mark names another record, so the projector reads
  the new topic from its start, whether it was stopped meanwhile or running all along.
- The reconciler puts back what a broker lost after acknowledging it.
"""

import asyncio
import contextlib
import logging
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumers.loop import Batch
from consumers.outbox_reconciler import OutboxReconciler
from consumers.projector import Projector
from producers.clients import stop_consumer
from producers.publisher import Publisher
from producers.topics import ensure_topics
from schemas.wire import encode
from service.audit.replay import LogUnavailable
from service.config import Settings
from service.db.engine import make_engine, make_sessionmaker
from service.runs import requests as run_requests
from service.runs.outbox import SqlOutbox
from tests.integration.test_projector import run_events
from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.fault_brokers import RestartableBroker, restartable
from tests.support.processes import settings_env
from tests.support.sql import fetchval
from tests.support.stack import Stack, api_client, create_batch, create_connection, running_stack, stack_settings

pytestmark = pytest.mark.slow

SOLO_MAIN = """
import asyncio, logging
from service.bootstrap import run_projector, run_worker
from service.config import Settings

async def main(settings):
    await asyncio.gather(run_worker(settings), run_projector(settings))

logging.basicConfig(level=logging.WARNING)
asyncio.run(main(Settings()))
"""
"""Worker and projector in one process, as `up` runs them (without its API and embedded services)."""


def start_solo(settings: Settings, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-c", SOLO_MAIN], env=settings_env(settings),
                                stdout=out, stderr=subprocess.STDOUT)


@contextlib.asynccontextmanager
async def api_only(settings: Settings) -> AsyncIterator[Stack]:
    from service.auth import mint_token

    async with api_client(settings) as client:
        yield Stack(settings, client, mint_token(settings, "tester", ["*:*:*"]))


async def new_batch(stack: Stack, source_dsn: str, target_dsn: str, rows: int = 50) -> int:
    table = unique("orders")
    await create_orders(source_dsn, table, rows)
    await create_empty_like_orders(target_dsn, table)
    src = await create_connection(stack, unique("src"), source_dsn)
    tgt = await create_connection(stack, unique("tgt"), target_dsn)
    return await create_batch(stack, unique("b"), src, tgt, {"table": table}, {"table": table, "mode": "overwrite"})


async def sync_ok(stack: Stack, batch_id: int, within: float = 60, wait: float = 10) -> str:
    """POST sync until it answers 200 (a broker or consumer still coming back answers 202/503 first); a run
    admitted but not answered within `wait` seconds (202) is followed until it succeeds."""
    async with asyncio.timeout(within):
        while True:
            response = await stack.client.post(f"/integration/batch/{batch_id}/sync?wait={wait:g}",
                                               headers=stack.headers())
            if response.status_code == 200:
                return str(response.json()["data"]["runId"])
            if response.status_code == 202:  # admitted, still running or waiting for a consumer
                return await finished(stack, batch_id, response.json()["data"]["runId"])
            assert response.status_code in (409, 503), response.text  # a run still active, or the broker away
            await asyncio.sleep(0.5)


async def finished(stack: Stack, batch_id: int, run_id: str) -> str:
    while True:
        response = await stack.client.get(f"/integration/batch/{batch_id}/runs/{run_id}", headers=stack.headers())
        if response.status_code == 200 and response.json()["data"]["status"] == "SUCCESS":
            return run_id
        await asyncio.sleep(0.2)


async def in_history(state_dsn: str, run_ids: list[str], within: float = 60) -> None:
    async with asyncio.timeout(within):
        while await fetchval(state_dsn, "SELECT count(*) FROM run_history WHERE run_id = ANY($1::uuid[]) "
                             "AND status = 'SUCCESS'", run_ids) != len(run_ids):
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("kind", ["tansu", "noida"])
async def test_a_solo_process_killed_and_started_again_consumes_at_once(kind, state_dsn, source_dsn, target_dsn,
                                                                        tmp_path):
    """`up`'s shape: SIGKILL the process that owns every partition, start another; it syncs within seconds.
    With a consumer group on noida-db the replacement never got a partition in 600 s (docs/brokers.md)."""
    with restartable(kind) as broker:
        settings = stack_settings(state_dsn, broker.bootstrap, partition_assignment="all")
        log = tmp_path / "solo.log"
        first = start_solo(settings, log)
        second = None
        try:
            async with api_only(settings) as stack:
                batch_id = await new_batch(stack, source_dsn, target_dsn)
                before = await sync_ok(stack, batch_id)
                first.kill()
                first.wait()
                second = start_solo(settings, log)
                loop = asyncio.get_running_loop()
                restarted = loop.time()
                after = await sync_ok(stack, batch_id, within=60)
                took = loop.time() - restarted
            await in_history(state_dsn, [before, after])
            assert took < 30, f"the replacement took {took:.1f}s to sync"
            assert await fetchval(state_dsn, "SELECT count(*) FROM consumer_offsets WHERE group_id = $1",
                                  f"{settings.topic_prefix}.worker") > 0, "the worker keeps its offsets in PostgreSQL"
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()


LOST_REQUEST_GRACE_SECONDS = 5
"""How long a PENDING run waits for its request here before the orphan scan takes it (30 s in the service)."""


class RelayPolls:
    """The outbox notifier of a reconciler run by a test: the stack's relay finds queued rows within its idle wait."""

    def notify(self) -> None:
        pass


async def reconciled_into_history(settings: Settings, state_dsn: str, run_ids: list[str], within: float = 60) -> None:
    """Pass after pass of the outbox reconciler (the service's runs one every `outbox_reconcile_seconds`), until the
    runs are in the history: what a restarted broker lost of their events is put back on the log."""
    engine = make_engine(settings.database_url or "")
    try:
        outbox = SqlOutbox(make_sessionmaker(engine), settings.outbox_retention_seconds)
        reconciler = OutboxReconciler(settings, outbox, RelayPolls())
        async with asyncio.timeout(within):
            while await fetchval(state_dsn, "SELECT count(*) FROM run_history WHERE run_id = ANY($1::uuid[]) "
                                 "AND status = 'SUCCESS'", run_ids) != len(run_ids):
                with contextlib.suppress(LogUnavailable):
                    await reconciler.reconcile_once()
                await asyncio.sleep(0.5)
    finally:
        await engine.dispose()


def gap_warnings(caplog: pytest.LogCaptureFixture, topic: str) -> list[str]:
    """The consumers' WARNINGs that `topic` was recreated, naming the gap."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
            and "recreated" in r.getMessage() and topic in r.getMessage() and "gap" in r.getMessage()]


@pytest.mark.parametrize("assignment", ["group", "all"])
async def test_after_a_memory_only_broker_restarts_every_run_reaches_the_history(assignment, state_dsn, source_dsn,
                                                                                 target_dsn, caplog, monkeypatch):
    """Tansu forgets topics and offsets on restart: consumers whose stored offsets lie past the new end must
    start again from the earliest offset (with a WARNING naming the topic and the gap), not stall for ever.

    Until our topics exist again, the restarted Tansu acknowledges writes to them and keeps none (docs/brokers.md),
    and a group's metadata request may recreate them first, with the broker's own partition count. What is lost
    comes back the service's slow ways, made quick here: a request's run through the orphan scan once its PENDING
    grace has passed (30 s in the service, 5 s here); a reply, lost or on a partition the reply listener does not
    read, by following the run once the API answered 202 after `wait` (10 s, 2 s here); events when the outbox
    reconciler puts them back (a pass every 60 s in the service; here the test runs the passes, once the consumers
    noticed the recreated events topic: a log rebuilt by then is not past their offsets, and nothing would show
    that they notice). These cost the group case up to 60 s. The worker must still read requests after the
    restart: not every run may come through the orphan scan."""
    caplog.set_level(logging.WARNING, logger="consumers.loop")
    with restartable("tansu") as broker:
        settings = stack_settings(state_dsn, broker.bootstrap, partition_assignment=assignment,
                                  outbox_reconcile_seconds=3600)
        async with running_stack(settings) as stack:
            batch_id = await new_batch(stack, source_dsn, target_dsn)
            before = [await sync_ok(stack, batch_id) for _ in range(4)]
            await in_history(state_dsn, before)
            monkeypatch.setattr(run_requests, "PENDING_GRACE_SECONDS", LOST_REQUEST_GRACE_SECONDS)
            await broker.restarted()
            after = [await sync_ok(stack, batch_id, within=90, wait=2) for _ in range(3)]
            async with asyncio.timeout(30):
                while not gap_warnings(caplog, settings.topics.events):
                    await asyncio.sleep(0.1)
            await reconciled_into_history(settings, state_dsn, after)
            admitted = await fetchval(state_dsn, "SELECT count(*) FROM request_ledger l JOIN runs r "
                                      "ON r.request_id = l.request_id WHERE r.id = ANY($1::uuid[])", after)
    assert admitted >= 1, "no request after the restart reached a worker: only the orphan scan ran them"
    assert gap_warnings(caplog, settings.topics.events)


async def events_on_log(broker: RestartableBroker, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return 0
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        for _ in range(20):
            fetched = await consumer.getmany(timeout_ms=200)
            seen += sum(len(records) for records in fetched.values())
        return seen
    finally:
        await stop_consumer(consumer)


async def test_the_reconciler_puts_back_what_a_restarted_broker_lost(state_dsn, source_dsn, target_dsn):
    """Every event published is on the log again after the broker lost them all; a second pass finds nothing
    missing."""
    with restartable("tansu") as broker:
        settings = stack_settings(state_dsn, broker.bootstrap, outbox_reconcile_seconds=3600)
        async with running_stack(settings) as stack:
            batch_id = await new_batch(stack, source_dsn, target_dsn)
            runs = [await sync_ok(stack, batch_id) for _ in range(3)]
            await in_history(state_dsn, runs)
            published = await fetchval(state_dsn, "SELECT count(*) FROM outbox WHERE topic = $1 "
                                       "AND published_at IS NOT NULL", settings.topics.events)
            assert published >= 6, "Started and Completed of three runs"
            await broker.restarted()
            assert await events_on_log(broker, settings.topics.events) == 0

            engine = make_engine(settings.database_url or "")
            try:
                outbox = SqlOutbox(make_sessionmaker(engine), settings.outbox_retention_seconds)

                class Wake:
                    notified = 0

                    def notify(self) -> None:
                        self.notified += 1

                wake = Wake()
                reconciler = OutboxReconciler(settings, outbox, wake)
                assert await reconciler.reconcile_once() == published
                assert wake.notified == 1
                async with asyncio.timeout(30):
                    while await fetchval(state_dsn, "SELECT count(*) FROM outbox WHERE topic = $1 AND "
                                         "published_at IS NULL", settings.topics.events):
                        await asyncio.sleep(0.1)  # the stack's relay publishes them again
                assert await events_on_log(broker, settings.topics.events) == published
                assert await reconciler.reconcile_once() == 0
            finally:
                await engine.dispose()


# --- a recreated topic that has grown past the stored position ---


class GatedProjector(Projector):
    """The projector, held inside a batch while the gate is closed (to recreate its topic under it)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = asyncio.Event()

    async def apply(self, batch: Batch) -> None:
        if not self.gate.is_set():
            self.held.set()
            await self.gate.wait()
        await super().apply(batch)


async def publish_runs(settings: Settings, batch_id: int, runs: int) -> list[str]:
    """`runs` runs' four events each, all keyed by one batch: one partition, in order."""
    publisher = Publisher(settings)
    await publisher.start()
    try:
        run_ids = []
        for _ in range(runs):
            run_id = uuid.uuid4()
            for event in run_events(batch_id, run_id, outcome="success"):
                await publisher.send(settings.topics.events, encode(event), key=str(batch_id).encode())
            run_ids.append(str(run_id))
        return run_ids
    finally:
        await publisher.stop()


async def recreate_topics(broker: RestartableBroker, settings: Settings) -> None:
    """Every topic gone and created again, empty: Tansu restarted; on noida-db (whose log survives a restart) the
    events topic deleted and created again, as an operator would."""
    if broker.kind == "tansu":
        await broker.restarted()
    else:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([settings.topics.events])
            async with asyncio.timeout(30):
                while settings.topics.events in await admin.list_topics():
                    await asyncio.sleep(0.2)
        finally:
            await admin.close()
    await ensure_topics(settings)


async def run_projector(projector: Projector) -> asyncio.Task[None]:
    task = asyncio.create_task(projector.run())
    await asyncio.sleep(0)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def identity_warnings(caplog: pytest.LogCaptureFixture, topic: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
            and f"{topic}[" in r.getMessage() and "is not the log we were reading" in r.getMessage()]


@pytest.mark.parametrize(("kind", "assignment"), [("tansu", "all"), ("tansu", "group"), ("noida", "all")])
async def test_a_projector_started_on_a_recreated_topic_grown_past_its_offsets_reads_it_from_the_start(
        kind, assignment, state_dsn, caplog):
    """`up` and its broker both restarted, or the topic recreated while the projector was down; meanwhile more
    was written to the new topic than the projector had read of the old one. Seeking to the stored offset would
    skip the new topic's first runs for ever."""
    caplog.set_level(logging.WARNING, logger="consumers.loop")
    with restartable(kind) as broker:
        settings = stack_settings(state_dsn, broker.bootstrap, partition_assignment=assignment)
        engine = make_engine(settings.database_url or "")
        sessions = make_sessionmaker(engine)
        batch_id = random.randint(10**6, 10**9)
        try:
            old = await publish_runs(settings, batch_id, 2)
            task = await run_projector(Projector(settings, sessions))
            try:
                await in_history(state_dsn, old, within=30)
            finally:
                await stop(task)
            await recreate_topics(broker, settings)
            new = await publish_runs(settings, batch_id, 3)  # 12 events where the projector had read 8

            task = await run_projector(Projector(settings, sessions))
            try:
                await in_history(state_dsn, new, within=30)
            finally:
                await stop(task)
        finally:
            await engine.dispose()
    assert identity_warnings(caplog, settings.topics.events), [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("kind", ["tansu", "noida"])
async def test_a_running_projector_reads_a_topic_recreated_under_it_from_the_start(kind, state_dsn, caplog):
    """One process reading every partition gets no new assignment when its topic is recreated (by a broker
    restart, or deleted and created again): the periodic check of the mark notices it. The projector is held
    inside a batch while the topic is recreated and grown past its position, so on Tansu (which answers a fetch
    past the end with nothing) it never sees a position past the end. noida-db, like Kafka, may answer the
    consumer's background fetch during the recreation with OffsetOutOfRange, which restarts the partition first."""
    caplog.set_level(logging.WARNING, logger="consumers.loop")
    with restartable(kind) as broker:
        settings = stack_settings(state_dsn, broker.bootstrap, partition_assignment="all")
        engine = make_engine(settings.database_url or "")
        projector = GatedProjector(settings, make_sessionmaker(engine))
        batch_id = random.randint(10**6, 10**9)
        task = await run_projector(projector)
        try:
            old = await publish_runs(settings, batch_id, 2)
            await in_history(state_dsn, old, within=30)
            projector.gate.clear()
            await publish_runs(settings, batch_id, 1)  # held with (some of) this run's events; the rest are lost
            await asyncio.wait_for(projector.held.wait(), 30)
            await recreate_topics(broker, settings)
            new = await publish_runs(settings, batch_id, 3)  # 12 events where the projector had read 8 or more
            await asyncio.sleep(1)  # its consumer fetches on meanwhile
            projector.gate.set()
            await in_history(state_dsn, new, within=60)
        finally:
            await stop(task)
            await engine.dispose()
    recreated = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                 and f"{settings.topics.events}[" in r.getMessage() and "recreated" in r.getMessage()]
    assert recreated if kind == "noida" else identity_warnings(caplog, settings.topics.events), recreated

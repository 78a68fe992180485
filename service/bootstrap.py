"""The composition root: builds engines, sessions, producers and consumers and hands them over.

It is the one module of `service/` that wires in `producers/` and `consumers/` (the Kafka side);
everything else in `service/` reaches Kafka only through the ports in `service/ports.py`.
Each `run_*` coroutine owns what it opens and closes it when cancelled.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import Settings
from service.db.engine import make_engine, make_sessionmaker

if TYPE_CHECKING:
    from fastapi import FastAPI

    from producers.outbox_relay import OutboxRelay
    from producers.publisher import Publisher

log = logging.getLogger(__name__)


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


def _require(settings: Settings) -> None:
    """Refuse to start a part without what it cannot run safely without, in one line naming it."""
    from service.security.secrets import Keyring

    if not settings.database_url:
        raise RuntimeError("BATCHSYNC_DATABASE_URL is not set (or use `batchsync up` for the embedded default)")
    if not settings.kafka_bootstrap:
        raise RuntimeError("BATCHSYNC_KAFKA_BOOTSTRAP is not set (or use `batchsync up` for the embedded default)")
    if settings.secret_key is None or not settings.secret_key.get_secret_value():
        raise RuntimeError("BATCHSYNC_SECRET_KEY is not set: it encrypts connection secrets and signs events "
                           "(`batchsync up` creates one in its data directory)")
    try:
        Keyring.from_settings(settings)
    except ValueError as error:
        raise RuntimeError(str(error)) from error


@contextlib.asynccontextmanager
async def database(settings: Settings, pool_size: int = 10) -> AsyncIterator[Database]:
    engine = make_engine(settings.database_url or "", settings.connect_timeout_seconds, pool_size)
    try:
        yield Database(engine, make_sessionmaker(engine))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def publishing(settings: Settings, db: Database,
                     reconcile: bool = False) -> AsyncIterator[tuple["Publisher", "OutboxRelay"]]:
    """A started publisher and its outbox relay running in the background; with `reconcile` (the worker's),
    also the reconciler that queues again what the broker acknowledged and lost (one per process suffices)."""
    from consumers.outbox_reconciler import OutboxReconciler
    from producers.outbox_relay import OutboxRelay
    from producers.publisher import Publisher
    from service.runs.outbox import SqlOutbox

    publisher = Publisher(settings)
    await publisher.start()
    outbox = SqlOutbox(db.sessions, settings.outbox_retention_seconds)
    relay = OutboxRelay(outbox, publisher)
    background = [asyncio.create_task(relay.run(), name="outbox-relay")]
    if reconcile:
        background.append(asyncio.create_task(OutboxReconciler(settings, outbox, relay).run(),
                                              name="outbox-reconciler"))
    try:
        yield publisher, relay
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await publisher.stop()


@contextlib.asynccontextmanager
async def api_app(settings: Settings) -> AsyncIterator["FastAPI"]:
    """The API app with its database, started request-reply client and live events reader, closed on exit."""
    from consumers.live_events import LiveEvents
    from consumers.replies import ReplyListener
    from producers.publisher import Publisher
    from producers.request_reply import RequestReplyClient
    from service.api.app import AppState, create_app

    _require(settings)
    async with database(settings) as db:
        publisher = Publisher(settings)
        await publisher.start()
        requester = RequestReplyClient(settings, publisher)
        replies = ReplyListener(settings, requester)
        await replies.start()
        state = AppState(settings=settings, sessions=db.sessions, requester=requester)
        live = asyncio.create_task(LiveEvents(settings, state.events.publish).run(), name="live-events")
        try:
            yield create_app(state, broker_check=requester.ready)
        finally:
            live.cancel()
            await asyncio.gather(live, return_exceptions=True)
            await replies.stop()
            await publisher.stop()


class _Server(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handlers: the process's entry point owns the signals and stops
    the API by cancelling `run_api`. uvicorn's handlers would also re-raise the signal after serving, which
    cancelled `up` a second time while the API was closing its clients (the `Unclosed AIOKafkaProducer`)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def run_api(settings: Settings) -> None:
    """The HTTP API served by uvicorn; returns when uvicorn stops or the task is cancelled."""
    async with api_app(settings) as app:
        config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port, log_config=None,
                                access_log=False, lifespan="on")
        server = _Server(config)
        serving = asyncio.create_task(server.serve(), name="uvicorn")
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            server.should_exit = True
            app.state.batchsync.events.close()  # end the live event streams, which uvicorn would wait on for ever
            await serving
            raise


async def run_worker(settings: Settings) -> None:
    from consumers.sync_worker import SyncWorker
    from service.connectors.registry import REGISTRY
    from service.observability.backlog import sampling_outbox

    _require(settings)
    async with database(settings, pool_size=settings.worker_concurrency + 5) as db:
        async with publishing(settings, db, reconcile=True) as (publisher, relay), sampling_outbox(db.sessions):
            await SyncWorker(settings, db.sessions, publisher, relay, REGISTRY).run()


async def run_projector(settings: Settings) -> None:
    from consumers.projector import Projector

    _require(settings)
    async with database(settings, pool_size=3) as db:
        await Projector(settings, db.sessions).run()


async def run_scheduler(settings: Settings) -> None:
    """Schedules, the retry policy and run notifications (service/scheduling, service/notify): any number may
    run; each fire and each retry starts once, each notification is sent by one of them."""
    from consumers.notifier import NotificationFeed
    from service.notify.deliveries import Defaults
    from service.notify.sender import Notifier
    from service.scheduling.scheduler import Scheduler
    from service.security.policy import AccessPolicy

    _require(settings)
    key = settings.secret_key.get_secret_value() if settings.secret_key else ""
    async with database(settings, pool_size=5) as db, publishing(settings, db) as (publisher, relay):
        notifier = Notifier(db.sessions, AccessPolicy.from_settings(settings).network, key,
                            Defaults.from_settings(settings), settings.notify_timeout_seconds)
        async with asyncio.TaskGroup() as group:
            group.create_task(Scheduler(settings, db.sessions, relay).run(), name="scheduler")
            group.create_task(NotificationFeed(settings, db.sessions, publisher).run(), name="notification-feed")
            group.create_task(notifier.run(), name="notifier")


async def run_all(settings: Settings) -> None:
    """API, worker, projector and scheduler in one process: when one stops, the others are stopped too.

    The one process reads every partition itself unless BATCHSYNC_PARTITION_ASSIGNMENT says otherwise: it
    needs no consumer group, which the embedded broker does not keep working after a crash (docs/brokers.md)."""
    if "partition_assignment" not in settings.model_fields_set:
        settings = settings.model_copy(update={"partition_assignment": "all"})
    tasks = [
        asyncio.create_task(run_api(settings), name="api"),
        asyncio.create_task(run_worker(settings), name="worker"),
        asyncio.create_task(run_projector(settings), name="projector"),
        asyncio.create_task(run_scheduler(settings), name="scheduler"),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("%s stopped", task.get_name(), exc_info=task.exception())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

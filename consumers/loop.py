"""The one consume loop: every reader of the bus is a `Subscription` plus a handler.

What each consumer once wrote for itself lives here:

- **Start-up** waits out a broker that is not up yet, ensuring our topics first (a restarted test broker
  forgets them, docs/brokers.md), and the loop reconnects when the broker fails under it.
- **Pacing**: empty fetches are paced on the client (consumers/pacing.py).
- **Back-off** after a failed handler: the records whose effects are not durable are read again.
- **Commit after durable**: a handler returns only once its effect is durable. `PerRecord` handlers get
  their offsets committed to the broker after each fetch and on revocation; a `PerBatch` handler stores
  its offsets in PostgreSQL with its effects (PostgreSQL is the transaction boundary, docs/brokers.md),
  the loop seeks to them on every assignment, and broker commits are only a lag hint. Commits are
  bounded in time because they can hang on a restarted test broker. Every bound inside the loop is an
  `asyncio.timeout`, never `asyncio.wait_for`: on Python 3.11 `wait_for` returns the result and drops a
  cancel that arrives as the awaited call completes, and a loop that lost its cancel runs for ever (it hung
  whoever awaited the cancelled task: tests stopping a loop right after a commit).
- **The DLQ**: a handler raising `Rejected(reason)` parks the record in `P.dlq` (consumers/dlq.py) and the
  loop goes on; a batch is then applied again without that record.
- **Rebalance hooks**: the above, then the owner's `on_assigned`.
- **One process, every partition** (`BATCHSYNC_PARTITION_ASSIGNMENT=all`, what `up` runs): a group
  subscription is read without any group membership: the loop assigns itself every partition and seeks
  each to the offset kept in PostgreSQL (a `PerRecord` handler names an `OffsetStore`, which the loop
  saves to after each fetch). noida-db never evicts a dead member, so a restarted process relying on its
  group would never get a partition again (docs/brokers.md).
- **Offsets past the end** (a topic recreated or truncated, a broker that lost acknowledged writes): the
  broker's OffsetOutOfRange (Kafka, noida-db) and a position beyond the high-water mark of a fetch (Tansu
  stalls silently there) both reset the partition to its earliest offset with a WARNING naming the topic,
  the partition and the gap; handlers are idempotent by eventId (or requestId), so re-reading is safe.
- **A recreated topic** that has grown past our position is not beyond any end: each position we keep is kept with
  a mark, one record we read from the partition (service/positions.py). After every assignment, before its first
  records are handled, and every `IDENTITY_CHECK_SECONDS`, the loop reads back the record at each mark's offset;
  another record (or none) there means the topic is not the log we were reading, and the partition is read again
  from its earliest offset with a WARNING, as above.
- **A topic that gains partitions** (`kafka-topics --alter --partitions`, or a memory-only Tansu restarted and our
  topic auto-created by a client's metadata request with its default 4 partitions) is followed by the loops that
  assign partitions themselves (no group, and the solo shape); a group rebalances on its own. Every
  `IDENTITY_CHECK_SECONDS` the loop compares the client's metadata (refreshed every few seconds) with its
  assignment and adds the new partitions, the old ones keeping their positions: a group-less read takes a new
  partition from its beginning (everything on it was published after we started), a solo one from its stored
  offset (or beginning), as at an assignment.

A subscription without a group reads every partition of its topic from the end (reply listeners,
`sync --follow`); nothing is committed for it. A bounded one (`Bounds`, consumers/bounded.py) reads every
partition from a start up to the end seen when reading began and then returns (audit replay): it gives up
on a broker that does not answer within `start_timeout`, and fails instead of reconnecting, since a
reconnected read would hand its handler records twice.
"""

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, assert_never

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError

from consumers.bounded import Bounds, Extent
from consumers.dlq import send_to_dlq
from consumers.lag import LagSampler
from consumers.pacing import pace_empty_fetches
from producers.clients import new_consumer, stop_consumer
from producers.publisher import Publisher
from producers.topics import ensure_topics
from schemas.signing import Headers
from service.config import Settings
from service.observability import metrics, tracing
from service.ports import BrokerUnavailable
from service.positions import Mark, Position

log = logging.getLogger(__name__)


class Record(Protocol):
    """What the loop and its handlers read of a consumed record (aiokafka's ConsumerRecord has it all)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers


COMMIT_TIMEOUT = 2.0
IDENTITY_CHECK_SECONDS = 5.0
"""How often a loop that keeps its own positions checks that each topic is still the log it was reading."""
FIRST_BACKOFF = 0.2
MAX_BACKOFF = 5.0
BROKER_ERRORS = (KafkaError, OSError, TimeoutError, BrokerUnavailable)


class Rejected(Exception):
    """The record can never be processed: the loop parks it in the DLQ with `reason` and goes on.

    A `PerBatch` handler names the record, since its batch holds many."""

    def __init__(self, reason: str, record: Record | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.record = record


@dataclass(frozen=True)
class Subscription:
    """What to read and how: one topic, in a group (load shared, offsets kept) or every partition alone."""

    name: str
    topic: str
    group_id: str | None
    fetch_max_wait_ms: int
    max_records: int | None = None
    poll_timeout_ms: int = 1000
    ensure_topics: bool = True
    """Create our topics before starting; off for clients of someone else's deployment (`sync --follow`)
    and for readers that must not invent an empty topic (audit replay)."""
    bounds: Bounds | None = None
    """Group-less only: read from a start to the end seen at the start, then return."""
    start_timeout: float | None = None
    """Give up starting (`BrokerUnavailable`) after this many seconds; None waits for the broker for ever."""
    max_partition_fetch_bytes: int | None = None
    """Larger fetches than the bus default, for a reader that goes through a whole log."""

    def __post_init__(self) -> None:
        if self.bounds is not None and self.group_id is not None:
            raise ValueError(f"{self.name}: a bounded read takes no consumer group")


@dataclass(frozen=True)
class Batch:
    """One fetch for a `PerBatch` handler: records per partition and where each partition resumes once the
    batch is durable (past any record the DLQ took)."""

    records: Mapping[TopicPartition, Sequence[Record]]
    next_offsets: Mapping[TopicPartition, int]
    marks: Mapping[TopicPartition, Mark] = field(default_factory=dict)
    """A record of each partition's log, to store with its offset (see `positions`)."""

    def without(self, record: Record) -> "Batch":
        tp = TopicPartition(record.topic, record.partition)
        kept = {p: [r for r in rs if p != tp or r.offset != record.offset] for p, rs in self.records.items()}
        return Batch(kept, self.next_offsets, self.marks)

    def positions(self) -> dict[int, Position]:
        """Partition → where it resumes once the batch is durable, with the mark the loop checks it by."""
        return {tp.partition: Position(offset, self.marks.get(tp)) for tp, offset in self.next_offsets.items()}


Stored = Mapping[int, int | Position]
"""Partition → next offset to read (with a mark of its log when the store keeps one), for the partitions stored."""


class OffsetStore(Protocol):
    """Where a `PerRecord` handler's positions are kept when no consumer group keeps them (PostgreSQL)."""

    async def load(self) -> Stored:
        """Partition → next offset to read, for the partitions stored."""

    async def save(self, offsets: Mapping[int, int], marks: Mapping[int, Mark]) -> None:
        """Store the next offsets of records whose effects are durable, and a mark of the log they were read from."""


class RecordHandler(Protocol):
    async def __call__(self, record: Record) -> None:
        """Make the record's effect durable; raise Rejected to park it, anything else to retry it."""


class BatchHandler(Protocol):
    async def __call__(self, batch: Batch) -> None:
        """Make the batch's effects and `batch.next_offsets` durable together; Rejected parks one record."""


@dataclass(frozen=True)
class PerRecord:
    """Records one by one; the loop commits each one's offset once its handler returned: to the broker in a
    group, to `offsets` when the process reads every partition itself."""

    handle: RecordHandler
    offsets: OffsetStore | None = None


@dataclass(frozen=True)
class PerBatch:
    """A fetch at a time; in a group the handler owns the offsets, which `stored` reads back (partition → next
    offset). A group-less read has none to store."""

    handle: BatchHandler
    stored: Callable[[], Awaitable[Stored]] | None = None


Handling = PerRecord | PerBatch


@dataclass
class _Backoff:
    delay: float = FIRST_BACKOFF

    async def sleep(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, MAX_BACKOFF)

    def reset(self) -> None:
        self.delay = FIRST_BACKOFF


class ConsumeLoop:
    """Consume `subscription` with `handling` until cancelled. `publisher` carries the DLQ (without one, a
    rejected record is only logged); `on_assigned` hears of each assignment once the loop positioned it;
    `ready` (made here unless given) is set while the loop is connected and positioned."""

    def __init__(self, settings: Settings, subscription: Subscription, handling: Handling, *,
                 publisher: Publisher | None = None,
                 on_assigned: Callable[[Collection[TopicPartition]], None] | None = None,
                 ready: asyncio.Event | None = None) -> None:
        self.settings = settings
        self.subscription = subscription
        self.handling = handling
        self.publisher = publisher
        self.on_assigned = on_assigned
        self.ready = ready or asyncio.Event()
        """Set while connected and positioned (in a group: started; the assignment may come later)."""
        self.extent: Extent | None = None
        """A bounded read's start and end per partition, once positioned."""
        if isinstance(handling, PerBatch) and handling.stored is None and subscription.group_id is not None:
            raise ValueError(f"{subscription.name}: a PerBatch handler in a group must say where it stored offsets")
        self.solo = subscription.group_id is not None and settings.partition_assignment == "all"
        """Every partition assigned here, positions from PostgreSQL, no group membership."""
        if self.solo and isinstance(handling, PerRecord) and handling.offsets is None:
            raise ValueError(f"{subscription.name}: reading every partition alone needs an OffsetStore")
        self.own_positions = (isinstance(handling, PerBatch) and handling.stored is not None) or (
            self.solo and isinstance(handling, PerRecord))
        """Positions kept by us (PostgreSQL), not by the broker: checked against the topic they were read from."""
        self._consumer: AIOKafkaConsumer | None = None
        self._done: dict[TopicPartition, int] = {}
        self._marks: dict[TopicPartition, Mark] = {}
        """A record of each partition's log as we read it, checked before trusting our positions in it."""
        self._latest: dict[TopicPartition, Mark] = {}
        """The last record fetched of each partition: its next mark once the current one is checked again."""
        self._check_at = 0.0
        """When the marks are read back next (loop time)."""
        self._grow_at = 0.0
        """When a manually assigned loop looks for partitions its topic gained next (loop time)."""
        self._assignments = 0
        self._backoff = _Backoff()
        self._lag = LagSampler(subscription.group_id, subscription.topic)

    async def run(self) -> None:
        """Consume until cancelled; a bounded read returns at its end and raises `BrokerUnavailable` when the
        broker fails it."""
        name = self.subscription.name
        while True:
            consumer = await self._start()
            try:
                self.ready.set()
                log.info("%s consuming %s", name, self.subscription.topic)
                await self._consume(consumer)
                return  # only a bounded read ends
            except BROKER_ERRORS as exc:
                if self.subscription.bounds is not None:
                    raise BrokerUnavailable(f"{name}: reading {self.subscription.topic} failed: {exc!r}") from exc
                log.warning("%s: the consumer failed, reconnecting in %.1fs: %r", name, self._backoff.delay, exc)
            finally:
                self.ready.clear()
                await self._stop_within(consumer)
            await self._backoff.sleep()

    # --- start and stop ---

    async def _start(self) -> AIOKafkaConsumer:
        """A started, positioned consumer; waits out a broker that is down (up to `start_timeout`)."""
        sub = self.subscription
        clock = asyncio.get_running_loop()
        attempt = 2 * self.settings.kafka_request_timeout_ms / 1000
        deadline = None if sub.start_timeout is None else clock.time() + sub.start_timeout
        tuning: dict[str, object] = {} if sub.max_partition_fetch_bytes is None else {
            "max_partition_fetch_bytes": sub.max_partition_fetch_bytes}
        if sub.bounds is None:
            tuning["auto_offset_reset"] = "none"  # a position past the end is ours to notice (_restart_from_earliest)
        group_id = None if self.solo else sub.group_id
        while True:
            consumer = new_consumer(self.settings, group_id=group_id, fetch_max_wait_ms=sub.fetch_max_wait_ms,
                                    **tuning)
            try:
                async with asyncio.timeout(attempt if deadline is None else min(attempt, deadline - clock.time())):
                    await self._connect(consumer)
                return consumer
            except BROKER_ERRORS as exc:
                await self._stop(consumer)
                if deadline is not None and clock.time() + self._backoff.delay >= deadline:
                    raise BrokerUnavailable(f"{sub.name}: the broker at {self.settings.kafka_bootstrap} did not "
                                            f"answer within {sub.start_timeout:.0f}s: {exc!r}") from exc
                log.warning("%s waiting for the broker, retrying in %.1fs: %r", sub.name, self._backoff.delay, exc)
            except BaseException:  # cancelled (shutdown, a caller's timeout) half-way through starting it
                await self._stop(consumer)
                raise
            await self._backoff.sleep()

    async def _connect(self, consumer: AIOKafkaConsumer) -> None:
        sub = self.subscription
        if sub.ensure_topics:
            await ensure_topics(self.settings)
        self._consumer = consumer
        if sub.group_id is not None and not self.solo:
            consumer.subscribe([sub.topic], listener=_Rebalance(self))
        await consumer.start()
        pace_empty_fetches(consumer, sub.fetch_max_wait_ms)
        if sub.bounds is not None:
            await self._assign_bounded(consumer, sub.bounds)
        elif self.solo:
            await self._assign_all(consumer)
        elif sub.group_id is None:
            await self._assign_at_end(consumer)

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        topic = self.subscription.topic
        await consumer.topics()
        return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]

    async def _assign_all(self, consumer: AIOKafkaConsumer) -> None:
        """Every partition, each at its stored offset (or its beginning), as a group's assignment would be."""
        partitions = await self._partitions(consumer)
        if not partitions:
            raise BrokerUnavailable(f"no partitions for {self.subscription.topic}")
        consumer.assign(partitions)
        await self._assigned(partitions)

    async def _assign_at_end(self, consumer: AIOKafkaConsumer) -> None:
        """Every partition at its end, positions resolved, so nothing published after this is missed."""
        partitions = await self._partitions(consumer)
        if not partitions:
            raise BrokerUnavailable(f"no partitions for {self.subscription.topic}")
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        if self.on_assigned is not None:
            self.on_assigned(partitions)

    async def _assign_bounded(self, consumer: AIOKafkaConsumer, bounds: Bounds) -> None:
        """Every partition at its start; a topic that does not exist is an empty read (it is not created)."""
        extent = Extent(self.subscription.topic, bounds)
        partitions = await self._partitions(consumer)
        extent.topic_exists = bool(partitions)
        if partitions:
            consumer.assign(partitions)
            await extent.position(consumer, partitions)
        self.extent = extent
        if self.on_assigned is not None:
            self.on_assigned(partitions)

    async def _stop_within(self, consumer: AIOKafkaConsumer) -> None:
        """Stop, but never hold a shutdown for ever: a client whose broker or store no longer answers (a commit,
        a group leave) is left behind after a bound, with a warning."""
        bound = 2 * self.settings.kafka_request_timeout_ms / 1000 + COMMIT_TIMEOUT
        task = asyncio.ensure_future(self._stop(consumer))
        done, _ = await asyncio.wait({task}, timeout=bound)
        if not done:
            task.cancel()
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            log.warning("%s: the consumer did not stop within %.0fs; left behind", self.subscription.name, bound)

    async def _stop(self, consumer: AIOKafkaConsumer) -> None:
        if self._consumer is consumer:
            with contextlib.suppress(Exception):
                await self._commit(consumer)
            self._consumer = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.settings.kafka_request_timeout_ms / 1000):
                await stop_consumer(consumer)

    # --- consuming ---

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        """Fetch and handle for ever, or, for a bounded read, until every partition reached its end."""
        sub = self.subscription
        extent = self.extent if sub.bounds is not None else None
        while extent is None or not extent.done:
            if extent is None and self._assigns_itself:
                await self._follow_growth(consumer)
            try:
                fetched = await consumer.getmany(timeout_ms=sub.poll_timeout_ms, max_records=sub.max_records)
            except OffsetOutOfRangeError as gone:
                await self._restart_from_earliest(consumer, dict(gone.args[0]) if gone.args else {})
                continue
            except NoOffsetForPartitionError as unpositioned:  # a group partition nobody committed yet
                await self._reposition(consumer, [tp for tp in unpositioned.args if isinstance(tp, TopicPartition)]
                                       or list(consumer.assignment()))
                continue
            if extent is not None:
                fetched = extent.trim(consumer, fetched)
            else:
                await self._check_past_end(consumer, fetched)
                fetched = await self._check_identity(consumer, fetched)
            match self.handling:
                case PerRecord(handle):
                    failed = await self._each(consumer, fetched, handle)
                    await self._commit(consumer)
                case PerBatch(handle):
                    failed = bool(fetched) and await self._batch(consumer, fetched, handle)
                case _:
                    assert_never(self.handling)
            if extent is not None:
                await extent.settle(consumer, handled=bool(fetched) and not failed)
            await self._lag.sample(consumer)
            if failed:
                await self._backoff.sleep()
            elif fetched:
                self._backoff.reset()

    @property
    def _assigns_itself(self) -> bool:
        """Every partition assigned by the loop, not by a group: it must notice partitions the topic gains."""
        return self.solo or self.subscription.group_id is None

    async def _follow_growth(self, consumer: AIOKafkaConsumer) -> None:
        """Every `IDENTITY_CHECK_SECONDS`, add the partitions the topic gained since it was assigned (the client
        refreshes its metadata every few seconds). `assign` replaces the assignment and forgets every position,
        so the old partitions are sought back to theirs; the new ones start where an assignment starts them: at
        their beginning for a group-less read (anything on a partition that did not exist when it started was
        published after), at their stored offset (or beginning) in the solo shape."""
        clock = asyncio.get_running_loop()
        if clock.time() < self._grow_at:
            return
        self._grow_at = clock.time() + IDENTITY_CHECK_SECONDS
        topic = self.subscription.topic
        assigned = consumer.assignment()
        new = sorted((tp for p in consumer.partitions_for_topic(topic) or ()
                      if (tp := TopicPartition(topic, p)) not in assigned), key=lambda tp: tp.partition)
        if not new:
            return
        positions: dict[TopicPartition, int] | None = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(COMMIT_TIMEOUT):
                positions = {tp: await consumer.position(tp) for tp in assigned}
        if positions is None:  # a position not known in time: looked for again on the next pass
            self._grow_at = clock.time()
            return
        partitions = sorted(assigned | set(new), key=lambda tp: tp.partition)
        consumer.assign(partitions)
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        log.info("%s: %s gained partitions %s; reading them from %s", self.subscription.name, topic,
                 [tp.partition for tp in new],
                 "their stored offsets (or beginning)" if self.solo else "their beginning")
        if self.solo:
            self._assignments += 1
            await self._reposition(consumer, new)
        else:
            await consumer.seek_to_beginning(*new)
        if self.on_assigned is not None:
            self.on_assigned(partitions)

    async def _check_past_end(self, consumer: AIOKafkaConsumer,
                              fetched: Mapping[TopicPartition, Sequence[Record]]) -> None:
        """A partition that fetched nothing while its position is beyond the high-water mark its fetch reported:
        the log behind it is gone (Tansu answers such fetches with nothing, for ever)."""
        beyond: dict[TopicPartition, int] = {}
        for tp in consumer.assignment() - set(fetched):
            end = consumer.highwater(tp)
            if end is None:
                continue
            with contextlib.suppress(KafkaError, AssertionError):
                if (position := await consumer.position(tp)) > end:
                    beyond[tp] = position
        if beyond:
            await self._restart_from_earliest(consumer, beyond)

    async def _restart_from_earliest(self, consumer: AIOKafkaConsumer, positions: Mapping[TopicPartition, int]) -> None:
        """Read the partitions again from their earliest offset: their log ends before where we were."""
        gone = [tp for tp in positions if tp in consumer.assignment()]
        for tp in gone:
            end = consumer.highwater(tp)
            if end is None:
                with contextlib.suppress(KafkaError, TimeoutError):
                    async with asyncio.timeout(COMMIT_TIMEOUT):
                        end = (await consumer.end_offsets([tp])).get(tp)
            gap = f"{positions[tp] - end} offsets ({end}..{positions[tp] - 1})" if end is not None else "unknown"
            log.warning("%s: %s[%s] ends at %s but we were at offset %s: the topic was recreated or truncated "
                        "(gap: %s); reading it again from the earliest offset, events are deduplicated by id",
                        self.subscription.name, tp.topic, tp.partition, end if end is not None else "?",
                        positions[tp], gap)
            self._forget(tp)
        if gone:
            await consumer.seek_to_beginning(*gone)

    async def _reposition(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        """Seek the partitions where the handler stored them, if it stores them, else (or if the store fails) to
        their beginning: for partitions the broker has no committed offset for (aiokafka may have asked it before
        our assignment hook sought them), and after a rebalance during a check."""
        if self.own_positions:
            try:
                await self._position(consumer, partitions)
                return
            except Exception:
                log.warning("%s: cannot read the stored offsets; reading %s from the beginning", self.subscription.name,
                            sorted(tp.partition for tp in partitions), exc_info=True)
        await consumer.seek_to_beginning(*partitions)

    def _forget(self, tp: TopicPartition) -> None:
        """What we knew of a partition's log, once it is read again from its earliest offset."""
        self._done.pop(tp, None)
        self._marks.pop(tp, None)
        self._latest.pop(tp, None)

    async def _check_identity(self, consumer: AIOKafkaConsumer,
                              fetched: Mapping[TopicPartition, Sequence[Record]]) -> Mapping[TopicPartition,
                                                                                                 Sequence[Record]]:
        """The fetched records that may be handled: when a check is due (after an assignment, then every
        `IDENTITY_CHECK_SECONDS`), each partition's mark is read back first. Another record at its offset, or none,
        means the topic was recreated (possibly grown past our position, where no end is crossed): the partition is
        read again from its earliest offset. A partition whose mark did not come back in time is held back and
        checked again. A mark found again moves on to the last record fetched, so it never ages out of the log."""
        if not self.own_positions:
            return fetched
        for tp, records in fetched.items():
            self._marks.setdefault(tp, mark_of(records[0]))  # nothing stored to check against: this log from now on
            self._latest[tp] = mark_of(records[-1])
        clock = asyncio.get_running_loop()
        assigned = consumer.assignment()
        marks = {tp: mark for tp, mark in self._marks.items() if tp in assigned}
        if clock.time() < self._check_at or not marks:
            return fetched
        self._check_at = clock.time() + IDENTITY_CHECK_SECONDS
        assignments = self._assignments
        found: dict[TopicPartition, Mark | None] = {}
        resume: dict[TopicPartition, int] | None = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(COMMIT_TIMEOUT):
                resume = {tp: fetched[tp][0].offset if tp in fetched else await consumer.position(tp) for tp in marks}
        if resume is not None:
            await self._read_back(consumer, marks, found)
        if self._assignments != assignments:  # a rebalance meanwhile: positions (and marks) from the store again,
            await self._reposition(consumer, list(consumer.assignment()))  # as the read-back moved them
            return {}
        if resume is None:  # a position not known in time: held back, checked on the next pass
            self._rewind(consumer, fetched)
            self._check_at = clock.time()
            return {}
        kept = {tp: records for tp, records in fetched.items() if found.get(tp) == marks.get(tp)}
        for tp, mark in marks.items():
            if tp not in found:  # held back, and checked again on the next pass
                consumer.seek(tp, resume[tp])
                self._check_at = clock.time()
            elif found[tp] == mark:
                consumer.seek(tp, fetched[tp][-1].offset + 1 if tp in fetched else resume[tp])
                self._marks[tp] = self._latest.get(tp, mark)
            else:
                log.warning("%s: %s[%s] is not the log we were reading: offset %s holds %s now: the topic was "
                            "recreated or truncated (gap: offsets before %s of the new log may have been skipped); "
                            "reading it again from the earliest offset, events are deduplicated by id",
                            self.subscription.name, tp.topic, tp.partition, mark.offset,
                            "no record" if found[tp] is None else "another record", resume[tp])
                self._forget(tp)
                await consumer.seek_to_beginning(tp)
        return kept

    async def _read_back(self, consumer: AIOKafkaConsumer, marks: Mapping[TopicPartition, Mark],
                         found: dict[TopicPartition, Mark | None]) -> None:
        """Fill `found` with the mark of the record now at each mark's offset, or None where the log has no such
        offset (OffsetOutOfRange, or a high-water mark at or before it); what does not answer in time is left out.
        Other partitions are paused meanwhile; the caller seeks every checked partition where it belongs."""
        others = consumer.assignment() - marks.keys()
        if others:
            consumer.pause(*others)
        try:
            for tp, mark in marks.items():
                consumer.seek(tp, mark.offset)
            clock = asyncio.get_running_loop()
            deadline = clock.time() + COMMIT_TIMEOUT
            wait_ms = max(100, 2 * self.subscription.fetch_max_wait_ms)
            while (pending := marks.keys() - found.keys()) and (left := deadline - clock.time()) > 0:
                try:
                    fetched = await consumer.getmany(timeout_ms=min(wait_ms, int(left * 1000) + 1), max_records=None)
                except OffsetOutOfRangeError as gone:
                    found.update({tp: None for tp in (dict(gone.args[0]) if gone.args else pending) if tp in pending})
                    continue
                for tp in pending:
                    if records := fetched.get(tp):
                        found[tp] = mark_of(records[0])
                    elif (end := consumer.highwater(tp)) is not None and end <= marks[tp].offset:
                        found[tp] = None
        finally:
            if others := others & consumer.assignment():
                consumer.resume(*others)

    async def _each(self, consumer: AIOKafkaConsumer, fetched: Mapping[TopicPartition, Sequence[Record]],
                    handle: RecordHandler) -> bool:
        """Handle each record; a partition whose record failed is read again from it. True when one failed."""
        failed = False
        for tp, records in fetched.items():
            for record in records:
                if not await self._handle_one(record, handle):
                    consumer.seek(tp, record.offset)
                    failed = True
                    break
                if self.subscription.group_id is not None:
                    self._done[tp] = record.offset + 1
        return failed

    async def _handle_one(self, record: Record, handle: RecordHandler) -> bool:
        try:
            with tracing.consuming(record.topic, record.partition, record.offset, record.headers):
                await handle(record)
        except Rejected as rejected:
            return await self._park(record, rejected.reason)
        except Exception:
            log.warning("%s: %s[%s]@%s failed; it is read again in %.1fs", self.subscription.name, record.topic,
                        record.partition, record.offset, self._backoff.delay, exc_info=True)
            return False
        return True

    async def _batch(self, consumer: AIOKafkaConsumer, fetched: Mapping[TopicPartition, Sequence[Record]],
                     handle: BatchHandler) -> bool:
        """Apply the batch, parking rejected records one at a time; on failure every partition is read again
        from its first record. True when it failed."""
        batch = Batch(fetched, {tp: records[-1].offset + 1 for tp, records in fetched.items()},
                      {tp: self._marks[tp] for tp in fetched if tp in self._marks})
        while True:
            try:
                await handle(batch)
            except Rejected as rejected:
                if rejected.record is not None and await self._park(rejected.record, rejected.reason):
                    batch = batch.without(rejected.record)
                    continue
                if rejected.record is None:
                    log.error("%s: a batch handler rejected a record without naming it", self.subscription.name)
                self._rewind(consumer, fetched)
                return True
            except Exception:
                log.warning("%s: a batch failed; it is read again in %.1fs", self.subscription.name,
                            self._backoff.delay, exc_info=True)
                self._rewind(consumer, fetched)
                return True
            if self.subscription.group_id is not None:
                await self._commit_hint(consumer, batch.next_offsets)
            return False

    @staticmethod
    def _rewind(consumer: AIOKafkaConsumer, fetched: Mapping[TopicPartition, Sequence[Record]]) -> None:
        for tp, records in fetched.items():
            with contextlib.suppress(KafkaError, AssertionError):  # no longer assigned: its new owner reads it
                consumer.seek(tp, records[0].offset)

    async def _park(self, record: Record, reason: str) -> bool:
        """Send a record that can never be processed to the DLQ; False only if the DLQ is unreachable."""
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if self.publisher is None:
            log.warning("%s: ignoring %s: %s", self.subscription.name, where, reason)
            return True
        try:
            await send_to_dlq(self.publisher, self.settings.topics.dlq, record, reason)
        except BrokerUnavailable:
            log.warning("%s: the DLQ is unavailable; %s is read again", self.subscription.name, where)
            return False
        metrics.DLQ_RECORDS.labels(record.topic).inc()
        log.warning("%s: %s sent to the DLQ: %s", self.subscription.name, where, reason)
        return True

    # --- offsets ---

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit the offsets of records whose effects are durable (to the broker, or to the handler's
        `OffsetStore` when reading alone); the next commit covers a failed one."""
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in self._done.items() if tp in assigned}
        if not offsets:
            return
        try:
            if self.solo and isinstance(self.handling, PerRecord) and self.handling.offsets is not None:
                await self.handling.offsets.save({tp.partition: offset for tp, offset in offsets.items()},
                                                 {tp.partition: self._marks[tp] for tp in offsets if tp in self._marks})
            else:
                async with asyncio.timeout(COMMIT_TIMEOUT):
                    await consumer.commit(offsets)
        except Exception as error:
            log.warning("%s: offset commit failed (%r); the next commit covers it", self.subscription.name, error)
            return
        for tp, offset in offsets.items():
            if self._done.get(tp) == offset:
                del self._done[tp]

    async def _commit_hint(self, consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]) -> None:
        """Tell the broker how far a `PerBatch` handler got: a lag hint only, its offsets are in PostgreSQL."""
        if self.solo:
            return  # no group: nothing to hint
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT):
                await consumer.commit(dict(offsets))
        except (KafkaError, TimeoutError) as exc:
            log.debug("%s: commit hint failed (offsets are in PostgreSQL): %r", self.subscription.name, exc)

    async def _revoked(self) -> None:
        if self._consumer is not None and isinstance(self.handling, PerRecord):
            await self._commit(self._consumer)

    async def _stored(self) -> Stored | None:
        """Where the handler's positions are kept, if it keeps them (PostgreSQL), else None (the broker's)."""
        match self.handling:
            case PerBatch(stored=stored) if stored is not None:
                return await stored()
            case PerRecord(offsets=offsets) if offsets is not None and self.solo:
                return await offsets.load()
        return None

    async def _assigned(self, assigned: Collection[TopicPartition]) -> None:
        self._assignments += 1
        if self._consumer is not None:
            await self._position(self._consumer, assigned)
        if self.on_assigned is not None:
            self.on_assigned(assigned)

    async def _position(self, consumer: AIOKafkaConsumer, partitions: Collection[TopicPartition]) -> None:
        """Seek each partition to the offset the handler stored, if it stores them, and check its mark first."""
        if (stored := await self._stored()) is None:
            return
        positions = {p: Position(v) if isinstance(v, int) else v for p, v in stored.items()}
        clock = asyncio.get_running_loop()
        self._check_at = clock.time() + IDENTITY_CHECK_SECONDS
        for tp in partitions:
            self._forget(tp)
            if (position := positions.get(tp.partition)) is None:
                await consumer.seek_to_beginning(tp)
                continue
            consumer.seek(tp, position.next_offset)
            if position.mark is not None:
                self._marks[tp] = position.mark
                self._check_at = 0.0  # read back before the first records of this assignment are handled
        log.info("%s assigned %s, stored offsets %s", self.subscription.name,
                 sorted(tp.partition for tp in partitions), {p: v.next_offset for p, v in positions.items()})


def mark_of(record: Record) -> Mark:
    """The record's offset and a digest of its timestamp, key, value and headers: the same record read again gives
    the same mark; a record written to a recreated topic at that offset, even with the same content, gives another
    (its timestamp differs)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (str(getattr(record, "timestamp", "")).encode(), record.key, record.value,
                 *(item for name, value in record.headers for item in (name.encode(), value))):
        digest.update(b"\xff" if part is None else len(part).to_bytes(4, "big") + part)
    return Mark(record.offset, digest.hexdigest())


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumeLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:  # noqa: ARG002
        await self._loop._revoked()

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._loop._assigned(assigned)

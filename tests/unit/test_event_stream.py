"""The live events fan-out (service/api/event_hub.py) and its SSE framing (service/api/routes/stream.py)."""

import asyncio
import json
import uuid
from datetime import UTC, datetime

from schemas.events import BatchSyncCompleted, BatchSyncProgress, BatchSyncStarted, Trigger
from service.api.event_hub import EventHub
from service.api.routes.stream import event_stream, sse_message


def started(batch_id: int) -> BatchSyncStarted:
    return BatchSyncStarted(correlation_id="c", batch_id=batch_id, run_id=uuid.uuid4(), producer="test",
                            trigger=Trigger.HTTP, requested_by="tester", started_at=datetime.now(UTC))


def progress(batch_id: int, records: int) -> BatchSyncProgress:
    return BatchSyncProgress(correlation_id="c", batch_id=batch_id, run_id=uuid.uuid4(), producer="test", chunk=1,
                             records_read=records, records_written=records, elapsed_ms=5, records_per_second=10.0)


async def test_every_subscriber_gets_every_event_in_order() -> None:
    hub = EventHub()
    async with hub.subscribe() as first, hub.subscribe() as second:
        events = [progress(1, n) for n in range(3)]
        for event in events:
            hub.publish(event)
        assert [await first.next() for _ in events] == events
        assert [await second.next() for _ in events] == events
    assert not hub.subscribers, "a closed stream leaves the hub"


async def test_a_subscriber_that_falls_behind_is_dropped_without_holding_back_the_others() -> None:
    hub = EventHub(queue_size=2)
    async with hub.subscribe() as slow, hub.subscribe() as fast:
        for n in range(2):
            hub.publish(progress(1, n))
        assert (await fast.next()).records_read == 0
        assert (await fast.next()).records_read == 1
        hub.publish(progress(1, 2))
        hub.publish(progress(1, 3))
        assert slow.dropped and not fast.dropped
        assert [(await slow.next()).records_read, (await slow.next()).records_read] == [0, 1]
        assert await slow.next() is None, "then the end of the stream, so the client reconnects and reloads"
        assert await slow.next() is None
        assert (await fast.next()).records_read == 2


async def test_the_stream_frames_events_filters_by_batch_and_keeps_the_connection_alive() -> None:
    hub = EventHub()
    stream = event_stream(hub, batch_id=7, heartbeat=0.05)
    assert (await anext(stream)).startswith("retry: ")
    mine, other = started(7), started(8)
    hub.publish(other)
    hub.publish(mine)
    frame = await anext(stream)
    assert frame == sse_message(mine), "the other batch's event is not sent"
    lines = frame.strip("\n").split("\n")
    assert lines[:2] == ["event: BatchSyncStarted", f"id: {mine.event_id}"]
    assert json.loads(lines[2].removeprefix("data: ")) == json.loads(mine.model_dump_json(by_alias=True))
    assert "batchId" in lines[2] and "batch_id" not in lines[2], "the wire's camelCase"
    assert await asyncio.wait_for(anext(stream), 1) == ": ping\n\n"
    await stream.aclose()
    assert not hub.subscribers


async def test_a_dropped_stream_ends() -> None:
    hub = EventHub(queue_size=1)
    stream = event_stream(hub, batch_id=None)
    await anext(stream)
    completed = BatchSyncCompleted(correlation_id="c", batch_id=1, run_id=uuid.uuid4(), producer="t", success=True,
                                   message="ok", sync_time=datetime.now(UTC))
    for _ in range(3):
        hub.publish(completed)
    assert await anext(stream) == sse_message(completed)
    assert [frame async for frame in stream] == []
    assert not hub.subscribers


async def test_closing_the_hub_ends_every_stream_and_any_opened_later() -> None:
    hub = EventHub()
    stream = event_stream(hub, batch_id=None, heartbeat=60)
    await anext(stream)
    hub.publish(started(1))
    hub.close()
    assert (await anext(stream)).startswith("event: BatchSyncStarted"), "what was queued is still sent"
    assert [frame async for frame in stream] == []
    late = event_stream(hub, batch_id=None, heartbeat=60)
    assert (await anext(late)).startswith("retry: ")
    assert await asyncio.wait_for(_rest(late), 1) == []


async def _rest(stream) -> list[str]:
    return [frame async for frame in stream]

"""`GET /integration/events/stream`: the lifecycle events as server-sent events, for the console.

Read with `fetch` and the bearer header (the console never puts a token in a URL, so no `EventSource`).
Each event is one SSE message: `event:` its `eventType`, `id:` its `eventId`, `data:` its JSON as on the
events topic. A comment line every `HEARTBEAT_SECONDS` keeps proxies from closing an idle stream. A
client that falls too far behind is dropped (the stream ends) and reconnects.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from schemas.events import LifecycleEvent
from service.api.deps import StateDep, require
from service.api.event_hub import EventHub
from service.api.openapi import PROTECTED, answers

router = APIRouter(prefix="/integration/events", tags=["events"])

STREAM_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "The event stream"}, **answers(*PROTECTED)}
HEARTBEAT_SECONDS = 15.0
RECONNECT_MS = 3000


def sse_message(event: LifecycleEvent) -> str:
    """One event as an SSE message (its JSON has no newline, so one `data:` line)."""
    return f"event: {event.event_type}\nid: {event.event_id}\ndata: {event.model_dump_json(by_alias=True)}\n\n"


async def event_stream(hub: EventHub, batch_id: int | None,
                       heartbeat: float = HEARTBEAT_SECONDS) -> AsyncIterator[str]:
    async with hub.subscribe() as subscriber:
        yield f"retry: {RECONNECT_MS}\n: connected\n\n"
        while True:
            try:  # not wait_for: on 3.11 it can drop a cancel, and this loop would outlive its client
                async with asyncio.timeout(heartbeat):
                    event = await subscriber.next()
            except TimeoutError:
                yield ": ping\n\n"
                continue
            if event is None:
                return
            if batch_id is None or event.batch_id == batch_id:
                yield sse_message(event)


@router.get("/stream", summary="Live lifecycle events (server-sent events)",
            description="`text/event-stream` of `BatchSyncStarted`, `BatchSyncProgress` and `BatchSyncCompleted` "
                        "as they are published, optionally of one batch (`batchId`); `event:` is the type, `data:` "
                        "the event's JSON. Send the token in the `Authorization` header. "
                        "Needs `integration:batch:query`.",
            responses=STREAM_ANSWERS,
            dependencies=[Depends(require("integration:batch:query"))])
async def stream_events(state: StateDep,
                        batch_id: Annotated[int | None, Query(alias="batchId", ge=1, le=2**31 - 1)] = None,
                        ) -> StreamingResponse:
    return StreamingResponse(event_stream(state.events, batch_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

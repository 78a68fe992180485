"""What the observability adds to one small sync, measured on the calls a sync makes, in this process.

    .venv/bin/python -m bench.observability_cost                 # 20,000 syncs' worth of calls
    .venv/bin/python -m bench.observability_cost --iterations 5000

A small sync's round trip (~15-45 ms on this machine, ± several ms from run to run) cannot show a 0.3 ms
difference end to end, so this times exactly what the instrumentation does per sync, with the real modules
and the real log handler (JSON to /dev/null, the production format):

- the HTTP middleware (span, two metrics, access line) around an ASGI app that answers at once, minus that
  app alone;
- the request's publish span and its traceparent, the consume spans of the request and of the reply;
- the run: its span, bound ids, active-runs gauge, its outcome counted and logged (INFO);
- one chunk: its span, records and duration;
- the traceparent added to the three outbox rows of a run (Started, Completed, reply), and the relay's
  publish of each;
- the consumer-lag sampler's throttle check on two fetches.

Each is measured with tracing off (no provider: the default without OTEL_EXPORTER_OTLP_ENDPOINT) and on (the
SDK with a batch processor whose exporter drops everything, so export I/O is left out).
"""

import argparse
import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from consumers.lag import LagSampler
from schemas.events import BatchSyncCompleted
from service.config import Settings
from service.observability import tracing
from service.observability.http import ObservedRequests
from service.observability.logs import configure
from service.observability.runs import observe_chunk, observed_run, run_ended

HEADERS = [(b"authorization", b"Bearer x"), (b"content-type", b"application/json")]


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _ignore(message: Any) -> None:
    return None


async def _nothing() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


def _scope() -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/integration/batch/1/sync", "headers": HEADERS,
            "client": ("127.0.0.1", 5000), "state": {}}


async def http_bare() -> None:
    await _answer(_scope(), _nothing, _ignore)


_observed = ObservedRequests(_answer, routes=[])


async def http_observed() -> None:
    await _observed(_scope(), _nothing, _ignore)


_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _Record:
    topic, partition, offset = "p.requested", 0, 1
    headers = [("eventType", b"BatchSyncRequested"),
               ("traceparent", _TRACEPARENT.encode())]


_reply = BatchSyncCompleted(correlation_id="c", batch_id=1, run_id=uuid.uuid4(), producer="bench", success=True,
                            message="ok", sync_time=datetime.now(UTC), records_synced=100, duration_ms=12)
_lag = LagSampler(None, "p.requested")


class _NoConsumer:
    def assignment(self) -> set[Any]:
        return set()


async def bus_and_run() -> None:
    """Everything but HTTP: publish, consume, run, one chunk, outbox headers, lag checks."""
    with tracing.publishing("p.requested", {"eventType": "BatchSyncRequested"}):
        pass
    with tracing.consuming(_Record.topic, 0, 1, _Record.headers):
        with observed_run(_reply.run_id, 1, "c", "http"):
            chunk = observe_chunk(1, 0)
            chunk.done(100)
            for _ in range(3):
                tracing.inject({"eventType": "BatchSyncCompleted", "correlationId": "c"})
            run_ended("SUCCESS", _reply)
    for _ in range(3):  # the relay publishes the three rows
        if (span := tracing.publish_span("p.events", {"traceparent": _TRACEPARENT})) is not None:
            span.end()
    with tracing.consuming("p.replies", 0, 1, _Record.headers):
        pass
    for _ in range(2):
        await _lag.sample(_NoConsumer())  # type: ignore[arg-type]


async def per_call(call: Callable[[], Awaitable[None]], iterations: int) -> float:
    for _ in range(200):
        await call()
    started = time.perf_counter()
    for _ in range(iterations):
        await call()
    return (time.perf_counter() - started) / iterations * 1e6


class _Drop(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def measure(iterations: int, label: str) -> None:
    bare = await per_call(http_bare, iterations)
    http = await per_call(http_observed, iterations) - bare
    rest = await per_call(bus_and_run, iterations)
    print(f"{label:<34} HTTP {http:6.1f} µs + bus/run/chunk {rest:6.1f} µs = {http + rest:6.1f} µs per sync "
          f"({(http + rest) / 1000:.3f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=20_000)
    args = parser.parse_args()
    configure(Settings(_env_file=None, log_format="json", log_level="INFO"),
              stream=open(os.devnull, "w"))  # noqa: SIM115 - the process's log stream, kept open
    logging.getLogger("batchsync.access").setLevel(logging.INFO)
    asyncio.run(measure(args.iterations, "tracing off (default)"))
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=100_000))
    trace.set_tracer_provider(provider)
    asyncio.run(measure(args.iterations, "tracing on (SDK, export dropped)"))
    provider.shutdown()


if __name__ == "__main__":
    main()

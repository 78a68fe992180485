"""A run as the operator sees it: its span, its ids on every log line, the run and chunk metrics, and one
log line for its outcome (a failure at WARNING with its `errorCode`).

The executor wraps each run in `observed_run` and reports the outcome with `run_ended`; the engine
reports each chunk with `observe_chunk`. Free of the state store and the bus (the engine imports it).
"""

import contextlib
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from opentelemetry.trace import INVALID_SPAN, Span, StatusCode

from schemas.events import BatchSyncCompleted
from service.observability import metrics, tracing
from service.observability.context import bound_to_run
from service.observability.tracing import tracer

log = logging.getLogger("service.runs")


@dataclass
class _Observed:
    trigger: str
    span: Span


_current: ContextVar[_Observed | None] = ContextVar("batchsync_run", default=None)


@contextlib.contextmanager
def observed_run(run_id: object, batch_id: int, correlation_id: str | None, trigger: str) -> Iterator[None]:
    """The run's span (current inside, so chunks and the events it writes continue it), its ids bound for
    logging, and the active-runs gauge."""
    spanned = tracer.start_as_current_span("run", attributes={"batchsync.run_id": str(run_id),
                                                              "batchsync.batch_id": batch_id}) \
        if tracing.active() else contextlib.nullcontext(INVALID_SPAN)
    with bound_to_run(run_id, batch_id, correlation_id), spanned as span:
        token = _current.set(_Observed(trigger, span))
        metrics.ACTIVE_RUNS.inc()
        try:
            yield
        finally:
            metrics.ACTIVE_RUNS.dec()
            _current.reset(token)


def run_ended(status: str, reply: BatchSyncCompleted) -> None:
    """Count the outcome and log it: success at INFO, anything else at WARNING with its errorCode."""
    observed = _current.get()
    code = reply.error_code.value if reply.error_code is not None else None
    metrics.run_finished(status, observed.trigger if observed else "unknown", code, reply.duration_ms / 1000)
    if code is None:
        log.info("run %s %s: %d records in %.2f s", reply.run_id, status, reply.records_synced,
                 reply.duration_ms / 1000)
        return
    log.warning("run %s %s (%s): %s", reply.run_id, status, code, reply.message, extra={"errorCode": code})
    if observed is not None and observed.span.is_recording():
        observed.span.set_status(StatusCode.ERROR, code)
        observed.span.set_attribute("batchsync.error_code", code)


class ChunkObservation:
    """One chunk's span and timer, from before its write to after its checkpoint."""

    __slots__ = ("_records", "_span", "_started")

    def __init__(self, number: int, records_before: int) -> None:
        self._started = time.perf_counter()
        self._records = records_before
        self._span = tracer.start_span("chunk", attributes={"batchsync.chunk": number}) if tracing.active() else None

    def done(self, records_after: int) -> None:
        metrics.chunk_written(records_after - self._records, time.perf_counter() - self._started)
        if self._span is not None:
            self._span.end()


def observe_chunk(number: int, records_before: int) -> ChunkObservation:
    return ChunkObservation(number, records_before)

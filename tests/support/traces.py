"""Spans of this test process in memory, recorded only inside `recording()`.

OpenTelemetry takes one tracer provider per process, for good; the provider installed here samples only
while a test records, so the tests after it pay for a non-recording span, as with no provider at all."""

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

_lock = threading.Lock()
_installed: list[tuple["_Switch", InMemorySpanExporter]] = []


class _Switch(Sampler):
    def __init__(self) -> None:
        self.on = False

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str, kind: Any = None,
                      attributes: Any = None, links: Sequence[Any] | None = None, trace_state: Any = None,
                      ) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "recording() switch of the tests"


def installed() -> bool:
    return bool(_installed)


@contextlib.contextmanager
def recording() -> Iterator[InMemorySpanExporter]:
    with _lock:
        if not _installed:
            switch, exporter = _Switch(), InMemorySpanExporter()
            provider = TracerProvider(sampler=switch)
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            _installed.append((switch, exporter))
        switch, exporter = _installed[0]
    exporter.clear()
    switch.on = True
    try:
        yield exporter
    finally:
        switch.on = False

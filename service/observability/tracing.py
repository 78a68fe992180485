"""OpenTelemetry traces: a W3C `traceparent` travels from the HTTP request through the Kafka headers of
the request, the events and the reply, and every process continues it (docs/spec.md §8).

Spans: the HTTP request (service/observability/http.py), each publish (a request; an outbox row, under
the context its stored headers carry), each record consumed, the run and each chunk. Export is OTLP over
HTTP, switched on only by OpenTelemetry's own `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`); its
other `OTEL_*` variables (headers, sampler, timeout) are read by the SDK. Unset, no provider is installed
and no span is made at all (`active()` is false): an incoming `traceparent` is only attached as the
current context, so the records a process writes still carry it on, for about a microsecond.

The `traceparent` header is not signed: the `batchsync-signature` covers topic, key and value only
(schemas/signing.py), so adding it changes no signature and audit replay reads records as before.
"""

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.config import Settings

log = logging.getLogger(__name__)

TRACE_HEADERS: Final = ("traceparent", "tracestate")
SERVICE_NAME: Final = "batchsync"

_propagator = TraceContextTextMapPropagator()
tracer = trace.get_tracer("batchsync")
"""A proxy: it records once a provider is installed (by `configure`, or by a test), and is a no-op before."""


def configure(settings: Settings, role: str) -> bool:
    """Export spans over OTLP when OpenTelemetry's endpoint variable is set; True when it is."""
    if not (settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_traces_endpoint):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"{SERVICE_NAME}-{role}",
                                                        "service.namespace": SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("%s: exporting traces over OTLP", role)
    return True


def active() -> bool:
    """Whether a tracer provider is installed (by `configure`, or by a test): spans are worth making."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@contextlib.contextmanager
def continued(context: otel_context.Context | None) -> Iterator[None]:
    """`context` (a caller's) current inside the block, without a span of ours."""
    if context is None:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def inject(headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus the current span's `traceparent` (and `tracestate`), when there is a span."""
    _propagator.inject(headers)
    return headers


def from_kafka(headers: Iterable[tuple[str, bytes | None]] | None) -> otel_context.Context | None:
    """The trace context a consumed record carries in its headers, if any."""
    carrier = {name: value.decode("latin-1") for name, value in headers or () if name in TRACE_HEADERS and value}
    return _propagator.extract(carrier) if carrier else None


def from_http(headers: Mapping[str, str]) -> otel_context.Context | None:
    carrier = {name: headers[name] for name in TRACE_HEADERS if name in headers}
    return _propagator.extract(carrier) if carrier else None


@contextlib.contextmanager
def consuming(topic: str, partition: int, offset: int,
              headers: Iterable[tuple[str, bytes | None]] | None) -> Iterator[None]:
    """The span of handling one record, continuing the trace its producer wrote in the headers."""
    if not active():
        with continued(from_kafka(headers)):
            yield
        return
    with tracer.start_as_current_span(f"process {topic}", context=from_kafka(headers), kind=SpanKind.CONSUMER,
                                      attributes={"messaging.system": "kafka", "messaging.destination.name": topic,
                                                  "messaging.kafka.destination.partition": partition,
                                                  "messaging.kafka.message.offset": offset}):
        yield


def publish_span(topic: str, headers: Mapping[str, str] | None) -> Span | None:
    """A started span for publishing a record written earlier (an outbox row), as a child of the context
    its headers carry; the caller ends it on the broker's ack. None without a provider or a context."""
    if not active() or not headers or "traceparent" not in headers:
        return None
    return tracer.start_span(f"send {topic}", context=_propagator.extract(dict(headers)), kind=SpanKind.PRODUCER,
                             attributes={"messaging.system": "kafka", "messaging.destination.name": topic})


@contextlib.contextmanager
def publishing(topic: str, headers: dict[str, str]) -> Iterator[dict[str, str]]:
    """The span of publishing one record; `headers` gain its `traceparent`, so the reader continues it."""
    if not active():
        yield inject(headers)
        return
    with tracer.start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER,
                                      attributes={"messaging.system": "kafka",
                                                  "messaging.destination.name": topic}):
        yield inject(headers)

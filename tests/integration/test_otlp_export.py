"""OTLP export is switched on by OpenTelemetry's own variable and by nothing else: `batchsync api` as a real
process sends its spans to a collector at OTEL_EXPORTER_OTLP_ENDPOINT (a loopback HTTP server standing in
for one), with the caller's trace id and the part's service name; without the variable it sends nothing."""

import gzip
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.brokers import _die_with_parent, free_port
from tests.support.loopback import http_server
from tests.support.processes import settings_env
from tests.support.stack import stack_settings

pytestmark = pytest.mark.slow

CLI = "from service.cli import app; app()"


class Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self.lock:
            self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def run_api(env: dict[str, str], port: int, traceparent: str) -> str:
    process = subprocess.Popen([sys.executable, "-c", CLI, "api"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"traceparent": traceparent}).is_success:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
    finally:
        process.terminate()  # a clean stop flushes the batch of spans
        output, _ = process.communicate(timeout=30)
    return output.decode(errors="replace")


def spans_of(received: list[tuple[str, bytes]]) -> list[tuple[str, str, str]]:
    """(service name, span name, trace id) of every span the collector got."""
    found = []
    for path, body in received:
        assert path == "/v1/traces"
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name")
            for scope in resource_spans.scope_spans:
                found += [(service, span.name, span.trace_id.hex()) for span in scope.spans]
    return found


@pytest.mark.parametrize("configured", [True, False], ids=["endpoint set", "endpoint unset"])
def test_spans_go_to_the_otlp_endpoint_only_when_it_is_set(state_dsn, broker, configured: bool) -> None:
    Collector.received = []
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    settings = stack_settings(state_dsn, broker.bootstrap, http_port=free_port())
    with http_server(Collector) as collector:
        env = settings_env(settings) | {"BATCHSYNC_LOG_FORMAT": "json"}
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        if configured:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector
        output = run_api(env, settings.http_port, f"00-{trace_id}-00f067aa0ba902b7-01")
    spans = spans_of(Collector.received)
    if not configured:
        assert spans == [], spans
        return
    assert ("batchsync-api", "GET /healthz", trace_id) in spans, (spans, output[-2000:])

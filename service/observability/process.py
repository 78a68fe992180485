"""What each service process sets up for the operator once, at start: traces, and the metrics server of a
part that has no API (logging is set up by every command, service/observability/logs.py)."""

from service.config import Settings
from service.observability import tracing
from service.observability.metrics import serve_metrics

PARTS_WITH_API = frozenset({"api", "up"})
"""They serve /metrics on the API port; the others (`worker`, `projector`, `scheduler`) on
BATCHSYNC_METRICS_PORT."""


def observe_part(settings: Settings, part: str) -> None:
    """Call once per process, before the part runs: OTLP export when configured, and /metrics on
    BATCHSYNC_METRICS_PORT for a part without the API."""
    tracing.configure(settings, part)
    if part not in PARTS_WITH_API:
        serve_metrics(settings, part)

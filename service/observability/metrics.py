"""Prometheus metrics of every process (docs/spec.md §8; the list and alerts: docs/operations.md).

They live in prometheus-client's default registry, so `/metrics` on the API and the metrics server of
`worker`, `projector` and `scheduler` (`serve_metrics`) show the same families. Labels are bounded sets
(status, trigger, error code, route template, topic and partition): never an id, a user or a path a
client chose, so the endpoint can stay open to scrapers without a token.
"""

import errno
import logging
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)

from service.config import Settings

log = logging.getLogger(__name__)

PORTS_TRIED: Final = 10
"""A taken `BATCHSYNC_METRICS_PORT` moves on to the next free one among this many."""

# One `_created` series per labelled counter is noise for every scraper.
disable_created_metrics()  # type: ignore[no-untyped-call]

RUN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
CHUNK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

RUNS = Counter("batchsync_runs", "Runs finished by this worker, by final status and trigger.",
               ["status", "trigger"])
RUN_FAILURES = Counter("batchsync_run_failures", "Runs that did not succeed, by error code.", ["error_code"])
RECORDS_SYNCED = Counter("batchsync_records_synced", "Records written to targets, counted per chunk.")
RUN_DURATION = Histogram("batchsync_run_duration_seconds", "Wall time of a run in this worker, by final status.",
                         ["status"], buckets=RUN_BUCKETS)
ACTIVE_RUNS = Gauge("batchsync_active_runs", "Runs executing in this worker now.")
TRANSIENT_RETRIES = Counter("batchsync_transient_retries",
                            "Transient errors retried in place (a dropped, refused or unanswered connection), by code.",
                            ["error_code"])
CHUNK_DURATION = Histogram("batchsync_chunk_duration_seconds", "Time to write one chunk and its checkpoint.",
                           buckets=CHUNK_BUCKETS)
OUTBOX_BACKLOG = Gauge("batchsync_outbox_backlog", "Outbox rows not yet published to the broker.")
OUTBOX_AGE = Gauge("batchsync_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0 if none).")
OUTBOX_REFUSED = Gauge("batchsync_outbox_refused", "Outbox rows the relay gave up on (refused by the broker).")
CONSUMER_LAG = Gauge("batchsync_consumer_lag", "Records behind the partition's end, per consumer group.",
                     ["group", "topic", "partition"])
DLQ_RECORDS = Counter("batchsync_dlq_records", "Records parked in the DLQ by this process, by source topic.",
                      ["topic"])
HTTP_REQUESTS = Counter("batchsync_http_requests", "HTTP requests answered, by method, route template and status.",
                        ["method", "route", "status"])
HTTP_DURATION = Histogram("batchsync_http_request_duration_seconds", "HTTP request latency by route template.",
                          ["method", "route"], buckets=HTTP_BUCKETS)


def run_finished(status: str, trigger: str, error_code: str | None, seconds: float | None) -> None:
    RUNS.labels(status, trigger).inc()
    if error_code is not None:
        RUN_FAILURES.labels(error_code).inc()
    if seconds is not None:
        RUN_DURATION.labels(status).observe(max(seconds, 0.0))


def transient_retried(error_code: str) -> None:
    TRANSIENT_RETRIES.labels(error_code).inc()


def chunk_written(records: int, seconds: float) -> None:
    RECORDS_SYNCED.inc(records)
    CHUNK_DURATION.observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric of this process, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


def serve_metrics(settings: Settings, role: str) -> int | None:
    """Serve /metrics for a process without the API (`worker`, `projector`, `scheduler`) on
    `BATCHSYNC_METRICS_PORT`; returns the port, or None when unset or no port could be had.

    Several processes on one machine with the same setting each take the next free port (logged, so a
    scrape config can follow); 0 takes any free port. A port that cannot be had is a WARNING, never a
    reason to stop the process: metrics are worth less than syncing.
    """
    if settings.metrics_port is None:
        return None
    host = settings.http_host
    wanted = settings.metrics_port
    candidates = [0] if wanted == 0 else [p for p in range(wanted, wanted + PORTS_TRIED) if p <= 65535]
    for port in candidates:
        try:
            server, _ = start_http_server(port, addr=host)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                log.warning("%s: metrics not served on %s:%s: %s", role, host, port, error)
                return None
            continue
        bound = int(server.server_address[1])
        if wanted and bound != wanted:
            log.warning("%s: metrics port %d is in use; serving metrics on %d instead", role, wanted, bound)
        log.info("%s: metrics on http://%s:%d/metrics", role, host, bound)
        return bound
    log.warning("%s: metrics ports %d-%d are all in use; this process serves no metrics",
                role, wanted, candidates[-1])
    return None

"""BATCHSYNC_METRICS_PORT for the parts without an API: a real server on a real port; a port in use moves to
the next free one with a WARNING; none free, or unset, serves nothing and never stops the process."""

import logging
import socket
from collections.abc import Iterator

import httpx
import pytest

from service.config import Settings
from service.observability.metrics import PORTS_TRIED, RECORDS_SYNCED, serve_metrics


def listening(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock


@pytest.fixture
def busy_run() -> Iterator[list[socket.socket]]:
    """PORTS_TRIED consecutive ports in use (retried until a free run of them is found)."""
    for _ in range(50):
        first = listening()
        held = [first]
        try:
            held += [listening(first.getsockname()[1] + i) for i in range(1, PORTS_TRIED)]
        except OSError:
            for sock in held:
                sock.close()
            continue
        yield held
        for sock in held:
            sock.close()
        return
    pytest.skip("no run of free ports")


def test_unset_serves_nothing() -> None:
    assert serve_metrics(Settings(_env_file=None), "worker") is None


def test_port_zero_serves_the_metrics_on_a_free_port() -> None:
    port = serve_metrics(Settings(_env_file=None, metrics_port=0), "worker")
    assert port
    RECORDS_SYNCED.inc(0)
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "batchsync_records_synced_total" in body


def test_a_port_in_use_moves_to_the_next_free_one_with_a_warning(caplog) -> None:
    with listening() as taken:
        wanted = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="service.observability.metrics"):
            port = serve_metrics(Settings(_env_file=None, metrics_port=wanted), "projector")
    assert port is not None and wanted < port < wanted + PORTS_TRIED
    assert f"metrics port {wanted} is in use; serving metrics on {port} instead" in caplog.text
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200


def test_no_free_port_is_a_warning_not_a_crash(busy_run, caplog) -> None:
    wanted = busy_run[0].getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="service.observability.metrics"):
        assert serve_metrics(Settings(_env_file=None, metrics_port=wanted), "scheduler") is None
    assert "are all in use; this process serves no metrics" in caplog.text


def test_an_address_it_cannot_bind_is_a_warning_not_a_crash(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="service.observability.metrics"):
        assert serve_metrics(Settings(_env_file=None, metrics_port=0, http_host="192.0.2.1"), "worker") is None
    assert "worker: metrics not served on 192.0.2.1:0" in caplog.text

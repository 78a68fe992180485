"""What `batchsync up` prints at the default log level, from start to a SIGINT or SIGTERM stop: none of
aiokafka's INFO lines (group joins, rebalances, leaves) and no `Unclosed AIOKafkaProducer/Consumer`."""

import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.support.brokers import free_port
from tests.support.embedded_up import kill_all, start_up, stop_up, wait_healthy
from tests.support.log_lines import logged

pytestmark = pytest.mark.slow

JOINED = "projector assigned"
"""Our own INFO line once the consumer groups are joined: the point where aiokafka used to log the most."""


def _wait_for(log: Path, text: str, after: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text()[after:]:
        assert time.monotonic() < deadline, f"no {text!r} in time:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_up_at_the_default_log_level_prints_no_aiokafka_chatter_and_closes_its_clients(
        tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    log = tmp_path / "up.log"
    process = start_up(tmp_path, port, log_level="INFO")
    children: list[psutil.Process] = []
    try:
        children = wait_healthy(process, port, tmp_path)
        _wait_for(log, JOINED, 0)
        stop_up(process, sig, children)
    finally:
        kill_all(process, children)
    output = log.read_text()
    assert logged(output, level="INFO", logger="consumers.loop")  # the level really is INFO: our own lines are there
    chatter = logged(output, logger="aiokafka")
    assert not chatter, chatter
    assert "Unclosed AIOKafka" not in output, output[-3000:]


def test_up_at_debug_shows_aiokafka_again(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "up.log"
    process = start_up(tmp_path, port, log_level="DEBUG")
    children: list[psutil.Process] = []
    try:
        children = wait_healthy(process, port, tmp_path)
        _wait_for(log, JOINED, 0)
        stop_up(process, signal.SIGINT, children)
    finally:
        kill_all(process, children)
    output = log.read_text()
    assert logged(output, logger="aiokafka")  # up reads every partition itself: no group coordinator lines
    assert "Unclosed AIOKafka" not in output, output[-3000:]

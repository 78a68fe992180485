"""Brokers a fault test can SIGKILL and start again on the same port (and, for noida-db, the same data), as a
crash and a restart would, so every client reconnects to "the same" broker."""

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.support.brokers import _die_with_parent, free_port, tansu_binary, wait_ready


@dataclass
class RestartableBroker:
    kind: str
    port: int
    data_dir: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        if self.kind == "tansu":
            url = f"tcp://127.0.0.1:{self.port}"
            return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--silent"]
        import noida_db

        exe = os.path.join(os.path.dirname(noida_db.__file__), "noida-db")  # the native binary, not the wrapper
        return [exe, "start", "--only", "kafka", "--kafka-port", str(self.port), "--host", "127.0.0.1",
                "--data-dir", str(self.data_dir)]

    def start(self) -> None:
        self.process = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        preexec_fn=_die_with_parent)
        with ThreadPoolExecutor(1) as thread:  # wait_ready runs its own event loop; the caller may have one
            thread.submit(wait_ready, self.bootstrap, self.process, 40).result()

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut: nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    async def restarted(self) -> None:
        """`restart` without blocking the caller's event loop (its clients keep running meanwhile)."""
        await asyncio.to_thread(self.restart)


@contextlib.contextmanager
def restartable(kind: str) -> Iterator[RestartableBroker]:
    """A Tansu (memory only: a restart loses every topic) or noida-db (its log in a folder) broker."""
    data_dir = tempfile.mkdtemp(prefix="noida-") if kind == "noida" else None
    broker = RestartableBroker(kind, free_port(), data_dir)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)

"""`batchsync up` as a real child process in a test directory, and the way in to its embedded PostgreSQL.

The embedded server asks for a password; the tests read it where `up` keeps it (`.batchsync/pg_password`),
as an operator of the host would, never from the service.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

CLI = "from service.cli import app; app()"
STATE_DIR = ".batchsync"


def up_env(port: int, log_level: str = "WARNING") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSYNC_")}
    env.update(BATCHSYNC_HTTP_PORT=str(port), BATCHSYNC_LOG_LEVEL=log_level)
    return env


def start_up(cwd: Path, port: int, *args: str, log_level: str = "WARNING") -> subprocess.Popen:
    log = open(cwd / "up.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-c", CLI, "up", *args], cwd=cwd, env=up_env(port, log_level),
                            stdout=log, stderr=subprocess.STDOUT)


def run_cli(cwd: Path, port: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Another `batchsync` command in the same directory, as an operator runs it next to `up`."""
    return subprocess.run([sys.executable, "-c", CLI, *args], cwd=cwd, env=up_env(port), capture_output=True,
                          text=True, timeout=timeout)


def wait_healthy(process: subprocess.Popen, port: int, cwd: Path, timeout: float = 90) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, (cwd / "up.log").read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return psutil.Process(process.pid).children(recursive=True)
        time.sleep(0.2)
    raise AssertionError("no /healthz in time:\n" + (cwd / "up.log").read_text()[-3000:])


def assert_gone(children: list[psutil.Process], timeout: float = 20) -> None:
    _, alive = psutil.wait_procs(children, timeout=timeout)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"orphans: {[(p.pid, p.name()) for p in alive]}"


def stop_up(process: subprocess.Popen, sig: int, children: list[psutil.Process]) -> None:
    process.send_signal(sig)
    assert process.wait(60) == 0 or sig == signal.SIGKILL
    assert_gone(children)


def kill_all(process: subprocess.Popen, children: list[psutil.Process]) -> None:
    for proc in [*children]:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    with contextlib.suppress(OSError):
        process.kill()
    process.wait()


def pg_port(cwd: Path) -> int:
    return int((cwd / STATE_DIR / "pg.port").read_text().strip())


def pg_password(cwd: Path, file: str = "pg_password") -> str:
    return (cwd / STATE_DIR / file).read_text().strip()


def pg_url(cwd: Path, database: str = "batchsync", user: str = "postgres", password: str | None = None) -> str:
    """A URL to the embedded server; the superuser's password from `pg_password` unless one is given."""
    secret = pg_password(cwd) if password is None else password
    auth = f"{user}:{secret}" if secret else user
    return f"postgresql://{auth}@127.0.0.1:{pg_port(cwd)}/{database}"


def bootstrap(cwd: Path) -> str:
    return str(json.loads((cwd / STATE_DIR / "endpoints.json").read_text())["kafka_bootstrap"])

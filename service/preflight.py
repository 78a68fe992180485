"""Checks a serving command makes before it starts anything: its HTTP port, the state database, the broker.

Each raises a `StartupError` (service/startup_errors.py) that names what failed and the setting to check,
so a wrong URL or a refused server is one line at start-up, not a retry loop or a traceback later.
A port counts as taken only when something listens on it: servers bind with SO_REUSEADDR, so the
TIME_WAIT sockets a stopped server leaves behind do not keep it from binding again.
"""

import asyncio
import errno
import os
import socket

import asyncpg
import psutil
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from service.config import Settings
from service.startup_errors import ExitCode, StartupError

ASYNC_DRIVER = "postgresql+asyncpg"


def bind_error(host: str, port: int) -> OSError | None:
    """Why a server could not bind `host:port` now (SO_REUSEADDR, as servers do), or None if it could."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        return error
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            return error
    return None


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    return bind_error(host, port) is not None


def listener(port: int) -> psutil.Process | None:
    """The process listening on TCP `port`, when this user may see it."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return psutil.Process(conn.pid)
    except psutil.Error:
        return None
    return None


def describe(proc: psutil.Process | None) -> str:
    if proc is None:
        return ""
    try:
        return f" (pid {proc.pid}, {proc.name()})"
    except psutil.Error:
        return f" (pid {proc.pid})"


def check_http_port(settings: Settings) -> None:
    """The API's address is bindable, before anything is started, seeded or printed."""
    host, port = settings.http_host, settings.http_port
    if port == 0:
        return
    error = bind_error(host, port)
    if error is None:
        return
    if error.errno == errno.EADDRINUSE:
        raise StartupError(f"port {port} on {host} is already in use{describe(listener(port))}: stop that "
                           f"process or choose another port with BATCHSYNC_HTTP_PORT", ExitCode.PORT_IN_USE)
    raise StartupError(f"cannot listen on {host}:{port} ({error.strerror or error}): check BATCHSYNC_HTTP_HOST "
                       "and BATCHSYNC_HTTP_PORT", ExitCode.CONFIG)


def state_database_url(raw: str) -> URL:
    """BATCHSYNC_DATABASE_URL parsed, or a StartupError saying what a valid one looks like."""
    example = "postgresql://USER@HOST:PORT/DATABASE, the password after USER:"
    try:
        url = make_url(raw)
    except ArgumentError:
        raise StartupError(f"BATCHSYNC_DATABASE_URL is not a URL (expected {example})", ExitCode.CONFIG) from None
    if url.drivername != ASYNC_DRIVER:
        scheme = url.drivername.removeprefix(ASYNC_DRIVER)
        raise StartupError(f"BATCHSYNC_DATABASE_URL has the scheme {scheme}:// where postgresql:// is expected "
                           f"({example})", ExitCode.CONFIG)
    if not url.database:
        raise StartupError(f"BATCHSYNC_DATABASE_URL names no database (expected {example})", ExitCode.CONFIG)
    return url


def _reason(error: OSError) -> str:
    """`connection refused`, not asyncio's `Connect call failed ('127.0.0.1', 1)`."""
    return os.strerror(error.errno).lower() if error.errno else str(error)


def _where(url: URL) -> str:
    return f"{url.host or 'localhost'}:{url.port or 5432}"


async def check_database(raw: str, timeout: float) -> None:
    """Log in to the state database once, mapping each refusal to what to fix."""
    url = state_database_url(raw)
    where, setting = _where(url), "check BATCHSYNC_DATABASE_URL"
    try:
        conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False),
                                     timeout=timeout)
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
        raise StartupError(f"the state database at {where} refused the login of user {url.username!r}: "
                           f"{setting} (user and password)", ExitCode.DATABASE) from None
    except asyncpg.InvalidCatalogNameError:
        raise StartupError(f"the state database {url.database!r} does not exist on {where}: create it or "
                           f"{setting}", ExitCode.DATABASE) from None
    except socket.gaierror:
        raise StartupError(f"the state database host {url.host!r} does not resolve: {setting}",
                           ExitCode.DATABASE) from None
    except TimeoutError:
        raise StartupError(f"the state database at {where} did not answer within {timeout:g}s: is it up? "
                           f"{setting}", ExitCode.DATABASE) from None
    except OSError as error:
        raise StartupError(f"cannot reach the state database at {where} ({_reason(error)}): is PostgreSQL "
                           f"running? {setting}", ExitCode.DATABASE) from None
    except asyncpg.PostgresError as error:
        raise StartupError(f"the state database at {where} refused us ({str(error).splitlines()[0]}): {setting}",
                           ExitCode.DATABASE) from None
    await conn.close()


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    found = []
    for part in (p.strip() for p in bootstrap.split(",")):
        host, _, port = part.rpartition(":")
        if not part or not host or not port.isdigit():
            raise StartupError(f"BATCHSYNC_KAFKA_BOOTSTRAP has {part!r} where HOST:PORT is expected "
                               "(comma-separated)", ExitCode.CONFIG)
        found.append((host.strip("[]"), int(port)))
    return found


async def check_broker(bootstrap: str, timeout: float) -> None:
    """At least one bootstrap server accepts a connection (the Kafka handshake is the clients' job)."""
    reasons = []
    for host, port in _addresses(bootstrap):
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port)
        except socket.gaierror:
            reasons.append(f"{host} does not resolve")
            continue
        except TimeoutError:
            reasons.append(f"{host}:{port} did not answer within {timeout:g}s")
            continue
        except OSError as error:
            reasons.append(f"{host}:{port}: {_reason(error)}")
            continue
        writer.close()
        return
    raise StartupError(f"cannot reach the broker ({'; '.join(reasons)}): is Kafka running? check "
                       "BATCHSYNC_KAFKA_BOOTSTRAP", ExitCode.BROKER)


def check_services(settings: Settings, *, broker: bool = True) -> None:
    """The configured state database, and the broker when `broker`, answer."""
    timeout = settings.connect_timeout_seconds
    if settings.database_url:
        asyncio.run(check_database(settings.database_url, timeout))
    if broker and settings.kafka_bootstrap:
        asyncio.run(check_broker(settings.kafka_bootstrap, timeout))

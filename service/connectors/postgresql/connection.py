"""PostgreSQL connections and the boundary where asyncpg's errors become our SyncError taxonomy.

Shared by the PostgreSQL source and target (`postgresql/source.py`, `postgresql/target.py`); nothing here logs a DSN,
so a password inside a connection URL never reaches a log line or an error message.
"""

import asyncio
import contextlib
import getpass
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import asyncpg.exceptions as pgerr

from schemas.messages import (
    DATABASE_MISSING,
    POSTGRESQL_HOST_INVALID,
    POSTGRESQL_HOSTS_REFUSED,
    POSTGRESQL_PORT_INVALID,
    POSTGRESQL_URL_MISSING,
    POSTGRESQL_URL_SCHEME,
    SESSION_CHANGED,
    WRITE_REFUSED,
    postgresql_parameters_refused,
    postgresql_sslmode,
    row_refused,
)
from service.connectors.base import Column
from service.connectors.errors import failed, mapped, transient
from service.connectors.postgresql.rejects import REFUSALS, refusal_reason
from service.connectors.postgresql.types import kind_of
from service.security.network import IPAddress
from service.sync.errors import (
    AccessDenied,
    AuthFailed,
    ConfigInvalid,
    ConnectRefused,
    ConnectTimeout,
    Side,
    SyncError,
    TableMissing,
)
from service.sync.model import Endpoint
from service.sync.transforms import quote_ident

COPY_FORMAT = "pgcopy-binary"

_TRANSIENT = (
    pgerr.PostgresConnectionError,
    pgerr.AdminShutdownError,
    pgerr.CannotConnectNowError,
    pgerr.TransactionRollbackError,
    pgerr.TooManyConnectionsError,
    pgerr.ConnectionDoesNotExistError,
    pgerr.InternalClientError,  # what asyncpg raises on a connection the server has just terminated
    pgerr.InvalidCachedStatementError,  # a table's columns changed under a cached statement: a new connection
    ConnectionError,
    TimeoutError,
)
_DROPPED_INTERFACE = ("connection is closed", "another operation is cancelling")
"""asyncpg's InterfaceErrors of a connection lost under us: closed, or still cancelling an operation whose
server went away (its cancel request cannot reach a restarting server). A new connection is the cure; "another
operation is in progress" is not here: that one is our bug, and fails loudly."""
_DRIVER_ERRORS = (pgerr.PostgresError, pgerr.InterfaceError, pgerr.InternalClientError, OSError, TimeoutError)
_MISSING_RELATION = re.compile(r'relation "([^"]+)" does not exist')


def dsn_of(endpoint: Endpoint) -> str:
    """The endpoint URL as asyncpg wants it (accepts the SQLAlchemy `+asyncpg` spelling)."""
    if not endpoint.url:
        raise ConfigInvalid(POSTGRESQL_URL_MISSING)
    url = endpoint.url
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql://" + url.removeprefix(prefix)
    if not url.startswith("postgresql://"):
        raise ConfigInvalid(POSTGRESQL_URL_SCHEME)
    return url


@dataclass(frozen=True)
class Server:
    """Where a connection URL points, parsed here rather than by the driver, so the policy sees exactly
    the one TCP host, port and database the connection will use (no socket, host list, service file or
    startup option left for the driver to find)."""

    host: str
    port: int
    user: str
    password: str
    database: str
    ssl: str | None


SSL_MODES = frozenset({"disable", "allow", "prefer", "require"})
"""sslmode values that need no host name check: the connection goes to the checked IP address."""
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")


def server_of(endpoint: Endpoint) -> Server:
    """The one TCP server of a libpq URL, or AccessDenied for a unix socket, several hosts or a parameter
    that would reach something else (`host`, `hostaddr`, `port`, `service`, `passfile`, `options`, files)."""
    parts = urlsplit(dsn_of(endpoint))
    if "," in parts.netloc.rpartition("@")[2]:
        raise AccessDenied(POSTGRESQL_HOSTS_REFUSED)
    host = parts.hostname or ""
    if "%" in host or "/" in host:
        raise AccessDenied(POSTGRESQL_HOSTS_REFUSED)
    if host and not _HOST.fullmatch(host):
        raise ConfigInvalid(POSTGRESQL_HOST_INVALID)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"sslmode"})
    if unknown:
        raise AccessDenied(postgresql_parameters_refused(unknown))
    ssl = query.get("sslmode", [None])[-1]
    if ssl is not None and ssl not in SSL_MODES:
        raise ConfigInvalid(postgresql_sslmode(sorted(SSL_MODES)))
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise ConfigInvalid(POSTGRESQL_PORT_INVALID) from exc
    user = unquote(parts.username or "") or getpass.getuser()
    database = unquote(parts.path.lstrip("/")) or user
    return Server(host=host or "localhost", port=port, user=user,
                  password=unquote(parts.password or ""), database=database, ssl=ssl)


IDLE_PER_KEY = 8
IDLE_SECONDS = 30.0
_idle: dict[str, list[tuple[float, asyncpg.Connection, asyncio.Task[bool]]]] = {}
_keys: dict[int, str] = {}
"""Connections that may be parked when closed (targets, table sources), by side and URL, each with the task
resetting its session."""


async def _reuse(key: str) -> asyncpg.Connection | None:
    """A parked connection to the same database, if one is still fresh and its session was reset.

    Opening a connection costs ~5 ms here, more than a whole small chunk; runs of small batches reuse
    them. Only targets and table sources: a query source's connection is never parked (docs/spec.md §7,
    "Query sources").
    """
    idle = _idle.get(key)
    loop = asyncio.get_running_loop()
    while idle:
        since, conn, reset = idle.pop()
        if conn._loop is not loop:
            continue  # parked by another event loop (tests run several): only that loop may close it
        await asyncio.wait([reset])  # never raises: a reset cancelled with its loop is simply not reused
        fresh = time.monotonic() - since < IDLE_SECONDS
        if not reset.cancelled() and reset.result() and not conn.is_closed() and fresh:
            return conn
        conn.terminate()
    return None


async def connect(endpoint: Endpoint, side: Side, connect_timeout: float, *,
                  reusable: bool | None = None) -> asyncpg.Connection:
    """Open a connection within `connect_timeout` seconds or raise the matching ConnectError.

    The policy is asked first, every time (a parked connection included): the URL's host is resolved,
    denied ranges and the service's own state database are refused, and the connection goes to the
    addresses that were checked, not to the name again. Targets are `reusable` by default; a source
    only when it runs no SQL of the operator's (a table source), since a query could change its session:
    a query source's connection is always new and is closed after its run.
    """
    server = server_of(endpoint)
    addresses = await endpoint.policy.network.database_addresses(server.host, server.port, server.database, side)
    if not (side == "target" if reusable is None else reusable):
        return await _open(server, addresses, side, connect_timeout)
    key = f"{side}:{dsn_of(endpoint)}"
    conn = await _reuse(key)
    if conn is None:
        conn = await _open(server, addresses, side, connect_timeout)
    _keys[id(conn)] = key
    return conn


async def _open(server: Server, addresses: list[IPAddress], side: Side, connect_timeout: float) -> asyncpg.Connection:
    settings = {"application_name": f"batchsync:{side}", "standard_conforming_strings": "on"}
    if side == "source":
        settings["default_transaction_read_only"] = "on"
        settings["synchronize_seqscans"] = "off"
    else:
        settings["temp_buffers"] = "64MB"  # upsert staging of a default 50k-row chunk stays in memory
    try:
        async with asyncio.timeout(connect_timeout):
            return await asyncpg.connect(
                host=[str(address) for address in addresses], port=server.port, user=server.user,
                password=server.password, database=server.database, ssl=server.ssl or "prefer",
                timeout=connect_timeout, server_settings=settings,
            )
    except TimeoutError as exc:
        raise ConnectTimeout(side) from exc
    except pgerr.InvalidAuthorizationSpecificationError as exc:
        raise AuthFailed(side) from exc
    except ConnectionRefusedError as exc:
        raise ConnectRefused(side) from exc
    except OSError as exc:
        raise ConnectRefused(side, detail=exc.strerror or type(exc).__name__) from exc
    except pgerr.InvalidCatalogNameError as exc:
        raise failed(side, DATABASE_MISSING) from exc
    except (pgerr.PostgresError, pgerr.InterfaceError) as exc:
        raise map_error(exc, side) from exc


def map_error(exc: BaseException, side: Side) -> SyncError:
    """Translate a driver or socket error into a terminal or transient SyncError for `side`."""
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, _TRANSIENT) or (
        isinstance(exc, pgerr.InterfaceError) and any(words in str(exc) for words in _DROPPED_INTERFACE)
    ):
        return transient(side, type(exc).__name__)
    if side == "source" and isinstance(exc, pgerr.ReadOnlySQLTransactionError):
        return AccessDenied(WRITE_REFUSED, detail=str(exc))
    if isinstance(exc, pgerr.UndefinedTableError):
        match = _MISSING_RELATION.search(str(exc))
        return TableMissing(match.group(1) if match else "?", side)
    if side == "target" and isinstance(exc, REFUSALS):  # a row the target refuses: say which and why
        return failed(side, row_refused(refusal_reason(exc)), detail=exc.sqlstate)
    if isinstance(exc, pgerr.PostgresError):
        return failed(side, detail=f"{exc.sqlstate}: {exc}")
    if isinstance(exc, pgerr.InterfaceError):  # the driver's own words (a misuse, a state it refuses), never a DSN
        return failed(side, detail=f"{type(exc).__name__}: {str(exc)[:200]}")
    return failed(side, detail=type(exc).__name__)


def boundary(side: Side) -> contextlib.AbstractContextManager[None]:
    """Map every driver error raised inside the block; our own SyncErrors pass unchanged."""
    return mapped(_DRIVER_ERRORS, lambda exc: map_error(exc, side))


_RESET_SESSION = ("CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
                  "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES")
"""`DISCARD ALL` without `DEALLOCATE ALL` and `DISCARD PLANS`: the session is reset, the driver's prepared
statements are kept. A statement prepared once per connection instead of at every execution is one round
trip fewer each time: an unprepared statement with parameters costs 1.9 ms here against 0.46 ms
(docs/performance.md). A plan the server cached is re-planned by the server itself when a table changes."""


async def close(conn: asyncpg.Connection | None, *, clean: bool) -> None:
    """Park a clean target connection for reuse, its session reset to how it was opened (`_RESET_SESSION`:
    temp tables, settings a trigger may have changed, role); close a source connection; terminate after
    a failure so no half-done COPY can block us.

    The reset runs in the background, off the run's path (a round trip, and a run's last step): the next
    run that takes the connection waits for it, and a connection whose reset failed is never reused."""
    if conn is None:
        return
    key = _keys.pop(id(conn), None)
    if conn.is_closed():
        return
    if not clean or (key is not None and conn.is_in_transaction()):
        conn.terminate()
        return
    idle = _idle.setdefault(key, []) if key is not None else None
    if idle is not None and len(idle) < IDLE_PER_KEY:
        reset = asyncio.create_task(_reset(conn))
        _resets.add(reset)
        reset.add_done_callback(_resets.discard)
        idle.append((time.monotonic(), conn, reset))
        return
    try:
        await conn.close(timeout=5)
    except Exception:
        conn.terminate()


_resets: set[asyncio.Task[bool]] = set()
"""Running resets, held so that none is garbage-collected before it ends."""


async def _reset(conn: asyncpg.Connection) -> bool:
    try:
        await conn.execute(_RESET_SESSION, timeout=5)
        return True
    except BaseException as exc:  # cancelled too (the loop is closing): drop it, and the driver's cancel request
        conn.terminate()
        if not isinstance(exc, Exception):
            raise
        return False


_SESSION_CHANGES = """
SELECT pg_catalog.current_setting('transaction_read_only') = 'on' AS read_only,
       coalesce(pg_catalog.string_agg(name, ', ' ORDER BY name), '') AS changed
  FROM pg_catalog.pg_settings
 WHERE source = 'session' AND name NOT IN ('transaction_read_only', 'transaction_isolation', 'transaction_deferrable')
"""


async def check_session(conn: asyncpg.Connection) -> None:
    """AccessDenied when the source session is no longer what it was opened as: still in its READ ONLY
    transaction, and no setting changed by SET or `set_config` (a query's functions can do either,
    whatever the guard saw in its text). Costs about 0.8 ms (`pg_settings` lists every setting)."""
    with boundary("source"):
        row = await conn.fetchrow(_SESSION_CHANGES)
    if row is None or not row["read_only"] or row["changed"]:
        raise AccessDenied(SESSION_CHANGED, detail=row["changed"] if row is not None else None)


_RELATION = """
SELECT rel.oid, a.attname, format_type(a.atttypid, a.atttypmod) AS sql_type,
       a.attnum = ALL(pk.indkey::int2[]) AND cardinality(pk.indkey::int2[]) = 1 AS sole_key
  FROM (SELECT to_regclass($1)::oid AS oid) AS rel
  LEFT JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
  LEFT JOIN pg_index pk ON pk.indrelid = rel.oid AND pk.indisprimary
 ORDER BY a.attnum"""


async def relation_shape(conn: asyncpg.Connection, table: str, side: Side) -> tuple[list[Column], Column | None]:
    """The table's columns from the catalog (generated columns excluded) and its primary key when that is one
    column (the keyset for chunk boundaries), in one statement; TableMissing when absent."""
    with boundary(side):
        rows = await conn.fetch(_RELATION, quote_ident(table))
    if not rows or rows[0]["oid"] is None:
        raise TableMissing(table, side)
    columns = [Column(r["attname"], r["sql_type"], kind_of(r["sql_type"])) for r in rows if r["attname"] is not None]
    key = next((Column(r["attname"], r["sql_type"]) for r in rows if r["sole_key"]), None)
    return columns, key


async def relation_columns(conn: asyncpg.Connection, table: str, side: Side) -> list[Column]:
    """The table's columns from the catalog (generated columns excluded); TableMissing when absent."""
    return (await relation_shape(conn, table, side))[0]


def json_value(native: Any, text: str | None) -> Any:
    """A key or cursor value as JSON: integers stay numbers, everything else travels as its text."""
    if isinstance(native, int) and not isinstance(native, bool):
        return native
    return text


async def check_connection(endpoint: Endpoint, connect_timeout: float) -> None:
    """Connect and run `SELECT 1`, raising the same SyncErrors a sync would (as the source side)."""
    conn = await connect(endpoint, "source", connect_timeout)
    try:
        with boundary("source"):
            await conn.fetchval("SELECT 1", timeout=connect_timeout)
    finally:
        await close(conn, clean=True)

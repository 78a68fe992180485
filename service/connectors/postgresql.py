"""PostgreSQL connections and the boundary where asyncpg's errors become our SyncError taxonomy.

Shared by the PostgreSQL source and target (`pg_source.py`, `pg_target.py`); nothing here logs a DSN,
so a password inside a connection URL never reaches a log line or an error message.
"""

import asyncio
import contextlib
import re
import time
from typing import Any

import asyncpg
import asyncpg.exceptions as pgerr

from service.connectors.base import Column
from service.connectors.errors import failed, mapped, transient
from service.sync.errors import AuthFailed, ConfigInvalid, ConnectRefused, ConnectTimeout, Side, SyncError, TableMissing
from service.sync.model import Endpoint
from service.sync.transforms import quote_ident
from service.sync.types import kind_of_postgresql

COPY_FORMAT = "pgcopy-binary"

_TRANSIENT = (
    pgerr.PostgresConnectionError,
    pgerr.AdminShutdownError,
    pgerr.CannotConnectNowError,
    pgerr.TransactionRollbackError,
    pgerr.TooManyConnectionsError,
    pgerr.ConnectionDoesNotExistError,
    pgerr.InternalClientError,  # what asyncpg raises on a connection the server has just terminated
    ConnectionError,
    TimeoutError,
)
_DRIVER_ERRORS = (pgerr.PostgresError, pgerr.InterfaceError, pgerr.InternalClientError, OSError, TimeoutError)
_MISSING_RELATION = re.compile(r'relation "([^"]+)" does not exist')


def dsn_of(endpoint: Endpoint) -> str:
    """The endpoint URL as asyncpg wants it (accepts the SQLAlchemy `+asyncpg` spelling)."""
    if not endpoint.url:
        raise ConfigInvalid("PostgreSQL 连接缺少 url")
    url = endpoint.url
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql://" + url.removeprefix(prefix)
    if not url.startswith("postgresql://"):
        raise ConfigInvalid("PostgreSQL 连接 url 须以 postgresql:// 开头")
    return url


IDLE_PER_KEY = 8
IDLE_SECONDS = 30.0
_idle: dict[tuple[str, str], list[tuple[float, asyncpg.Connection]]] = {}
_keys: dict[int, tuple[str, str]] = {}


def _reuse(key: tuple[str, str]) -> asyncpg.Connection | None:
    """A parked connection to the same database for the same side, if one is still fresh.

    Opening a connection costs ~7 ms here, more than a whole small chunk; runs of small batches reuse them.
    """
    idle = _idle.get(key)
    loop = asyncio.get_running_loop()
    while idle:
        since, conn = idle.pop()
        if not conn.is_closed() and time.monotonic() - since < IDLE_SECONDS and conn._loop is loop:
            return conn
        conn.terminate()
    return None


async def connect(endpoint: Endpoint, side: Side, connect_timeout: float) -> asyncpg.Connection:
    """Open a connection within `connect_timeout` seconds or raise the matching ConnectError."""
    key = (dsn_of(endpoint), side)
    conn = _reuse(key)
    if conn is None:
        conn = await _open(endpoint, side, connect_timeout)
    _keys[id(conn)] = key
    return conn


async def _open(endpoint: Endpoint, side: Side, connect_timeout: float) -> asyncpg.Connection:
    settings = {"application_name": f"batchsync:{side}", "standard_conforming_strings": "on"}
    if side == "source":
        settings["default_transaction_read_only"] = "on"
        settings["synchronize_seqscans"] = "off"
    else:
        settings["temp_buffers"] = "64MB"  # upsert staging of a default 50k-row chunk stays in memory
    dsn = dsn_of(endpoint)
    try:
        async with asyncio.timeout(connect_timeout):
            return await asyncpg.connect(
                dsn, timeout=connect_timeout, server_settings=settings, statement_cache_size=0
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
        raise failed(side, "数据库不存在") from exc
    except (pgerr.PostgresError, pgerr.InterfaceError) as exc:
        raise map_error(exc, side) from exc


def map_error(exc: BaseException, side: Side) -> SyncError:
    """Translate a driver or socket error into a terminal or transient SyncError for `side`."""
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, _TRANSIENT) or (
        isinstance(exc, pgerr.InterfaceError) and "connection is closed" in str(exc)
    ):
        return transient(side, type(exc).__name__)
    if isinstance(exc, pgerr.UndefinedTableError):
        match = _MISSING_RELATION.search(str(exc))
        return TableMissing(match.group(1) if match else "?", side)
    if isinstance(exc, pgerr.PostgresError):
        return failed(side, detail=f"{exc.sqlstate}: {exc}")
    return failed(side, detail=type(exc).__name__)


def boundary(side: Side) -> contextlib.AbstractContextManager[None]:
    """Map every driver error raised inside the block; our own SyncErrors pass unchanged."""
    return mapped(_DRIVER_ERRORS, lambda exc: map_error(exc, side))


async def close(conn: asyncpg.Connection | None, *, clean: bool) -> None:
    """Park a clean connection for reuse (temp tables discarded); terminate after a failure so no
    half-done COPY can block us."""
    if conn is None:
        return
    key = _keys.pop(id(conn), None)
    if conn.is_closed():
        return
    if not clean or conn.is_in_transaction():
        conn.terminate()
        return
    try:
        idle = _idle.setdefault(key, []) if key is not None else None
        if idle is not None and len(idle) < IDLE_PER_KEY:
            await conn.execute("DISCARD TEMP", timeout=5)
            idle.append((time.monotonic(), conn))
        else:
            await conn.close(timeout=5)
    except Exception:
        conn.terminate()


async def relation_columns(conn: asyncpg.Connection, table: str, side: Side) -> list[Column]:
    """The table's columns from the catalog (generated columns excluded); TableMissing when absent."""
    with boundary(side):
        oid = await conn.fetchval("SELECT to_regclass($1)::oid", quote_ident(table))
        if oid is None:
            raise TableMissing(table, side)
        rows = await conn.fetch(
            """SELECT attname, format_type(atttypid, atttypmod) AS sql_type
                 FROM pg_attribute
                WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
                ORDER BY attnum""",
            oid,
        )
    return [Column(r["attname"], r["sql_type"], kind_of_postgresql(r["sql_type"])) for r in rows]


async def single_primary_key(conn: asyncpg.Connection, table: str) -> Column | None:
    """The table's primary key when it is one column: the keyset for chunk boundaries."""
    with boundary("source"):
        rows = await conn.fetch(
            """SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS sql_type
                 FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                WHERE i.indrelid = to_regclass($1) AND i.indisprimary""",
            quote_ident(table),
        )
    return Column(rows[0]["attname"], rows[0]["sql_type"]) if len(rows) == 1 else None


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

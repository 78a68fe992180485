"""MySQL/MariaDB connections (asyncmy) and the boundary where its errors become our SyncError taxonomy.

Shared by `mysql/source.py` and `mysql/target.py`. Every session runs in UTC (`time_zone = '+00:00'`)
with utf8mb4, so DATETIME values, which carry no zone, are UTC by convention: written converted to
UTC and read back marked UTC. Nothing here logs the URL, so a password never reaches a log line.
"""

import asyncio
import contextlib
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncmy
import asyncmy.errors as myerr

from schemas.messages import (
    DATABASE_MISSING,
    MYSQL_DATABASE_MISSING,
    MYSQL_HOST_INVALID,
    MYSQL_PARAMETERS_REFUSED,
    MYSQL_PORT_INVALID,
    MYSQL_URL_SCHEME,
    WRITE_REFUSED,
)
from service.connectors.base import Column
from service.connectors.errors import failed, mapped, transient
from service.connectors.mysql.types import kind_of
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

_AUTH = {1044, 1045, 1698}
_MISSING_TABLE = {1146}
_TRANSIENT = {1205, 1213, 2006, 2013, 2014, 1053, 1927}
"""Lock wait timeout, deadlock, server gone away, lost connection, shutdown, connection killed."""
_READ_ONLY_TRANSACTION = 1792
_DRIVER_ERRORS = (myerr.MySQLError, OSError, TimeoutError, asyncio.IncompleteReadError)


def quote_ident(name: str) -> str:
    """Backquote a possibly database-qualified identifier, part by part."""
    return ".".join("`" + part.replace("`", "``") + "`" for part in name.split("."))


_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")


def params_of(endpoint: Endpoint) -> dict[str, Any]:
    """asyncmy keyword arguments from `mysql://user:pw@host:port/db`: one TCP server (no host means this
    machine, over TCP), no query parameters (`unix_socket` and the like are refused)."""
    url = endpoint.url or ""
    scheme = url.split("://", 1)[0]
    if scheme not in ("mysql", "mariadb", "mysql+asyncmy", "mysql+aiomysql"):
        raise ConfigInvalid(MYSQL_URL_SCHEME)
    parts = urlsplit(url)
    if parts.query:
        raise AccessDenied(MYSQL_PARAMETERS_REFUSED)
    host = parts.hostname or "127.0.0.1"
    if not _HOST.fullmatch(host):
        raise ConfigInvalid(MYSQL_HOST_INVALID)
    try:
        port = parts.port or 3306
    except ValueError as exc:
        raise ConfigInvalid(MYSQL_PORT_INVALID) from exc
    database = parts.path.lstrip("/")
    if not database:
        raise ConfigInvalid(MYSQL_DATABASE_MISSING)
    return {
        "host": host,
        "port": port,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": unquote(database),
    }


def _code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def map_error(exc: BaseException, side: Side, table: str | None = None) -> SyncError:
    """Translate a driver or socket error into a terminal or transient SyncError for `side`."""
    if isinstance(exc, SyncError):
        return exc
    code = _code(exc)
    if code in _TRANSIENT or isinstance(exc, ConnectionError | asyncio.IncompleteReadError):
        return transient(side, f"{type(exc).__name__} {code or ''}".strip())
    if code in _MISSING_TABLE:
        return TableMissing(table or "?", side)
    if code in _AUTH:
        return AuthFailed(side)
    if side == "source" and code == _READ_ONLY_TRANSACTION:
        return AccessDenied(WRITE_REFUSED, detail=str(exc.args[1]) if len(exc.args) > 1 else None)
    if isinstance(exc, myerr.MySQLError) and code is not None:
        return failed(side, detail=f"{code}: {exc.args[1] if len(exc.args) > 1 else ''}")
    return failed(side, detail=type(exc).__name__)


def boundary(side: Side, table: str | None = None) -> contextlib.AbstractContextManager[None]:
    """Map every driver error raised inside the block; our own SyncErrors pass unchanged."""
    return mapped(_DRIVER_ERRORS, lambda exc: map_error(exc, side, table))


async def connect(endpoint: Endpoint, side: Side, connect_timeout: float) -> asyncmy.Connection:
    """Open a new UTC, utf8mb4 session within `connect_timeout` seconds or raise the matching ConnectError.

    The policy is asked first (denied ranges; the state store is PostgreSQL, so no state database here)
    and the session goes to the first checked address that answers, not to the name again. A source
    session is READ ONLY and then opens one READ ONLY transaction (READ COMMITTED: no snapshot held
    between the chunks of a long read) that is never committed: its statements cannot write, and
    nothing they change outlives the connection, which is never reused."""
    params = params_of(endpoint)
    addresses = await endpoint.policy.network.addresses(params["host"], params["port"], side)
    init = ["SET time_zone = '+00:00', net_write_timeout = 600, net_read_timeout = 600"]
    if side == "source":
        init += ["SET SESSION TRANSACTION READ ONLY", "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                 "START TRANSACTION READ ONLY"]
    try:
        async with asyncio.timeout(connect_timeout):
            conn = await _first_answering(addresses, params, connect_timeout)
            async with conn.cursor() as cur:
                for statement in init:
                    await cur.execute(statement)
            return conn
    except TimeoutError as exc:
        raise ConnectTimeout(side) from exc
    except myerr.MySQLError as exc:
        code, cause = _code(exc), exc.__cause__ or exc.__context__
        if code in _AUTH:
            raise AuthFailed(side) from exc
        if code == 1049:
            raise failed(side, DATABASE_MISSING) from exc
        if code == 2003:
            if isinstance(cause, TimeoutError):
                raise ConnectTimeout(side) from exc
            raise ConnectRefused(side, detail=getattr(cause, "strerror", None)) from exc
        raise map_error(exc, side) from exc
    except ConnectionRefusedError as exc:
        raise ConnectRefused(side) from exc
    except OSError as exc:
        raise ConnectRefused(side, detail=exc.strerror or type(exc).__name__) from exc


async def _first_answering(addresses: list[IPAddress], params: dict[str, Any],
                           connect_timeout: float) -> asyncmy.Connection:
    """A connection to the first of the checked addresses that accepts one (as a client tries each
    address a name resolves to); the last refusal otherwise."""
    for index, address in enumerate(addresses):
        try:
            return await asyncmy.connect(
                **(params | {"host": str(address)}), charset="utf8mb4", autocommit=True, binary_prefix=True,
                connect_timeout=max(1, int(connect_timeout)),
            )
        except (myerr.MySQLError, OSError):
            if index == len(addresses) - 1:
                raise
    raise ConnectionRefusedError("no address")


async def close(conn: asyncmy.Connection | None, *, clean: bool) -> None:
    """Close politely after success; drop the socket after a failure (an unread stream may be pending)."""
    if conn is None:
        return
    if clean:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await conn.ensure_closed()
            return
    conn.close()


async def fetch(conn: asyncmy.Connection, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        return list(await cur.fetchall())


async def table_columns(conn: asyncmy.Connection, table: str, side: Side) -> tuple[list[Column], list[str]]:
    """The table's columns (generated ones excluded) with their kinds, and its primary key columns.
    MariaDB stores JSON as LONGTEXT with a `json_valid` check, which is how its JSON columns are found."""
    schema, _, name = table.rpartition(".")
    where = "TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s"
    args = (schema or None, name)
    with boundary(side, table):
        rows = await fetch(
            conn,
            "SELECT COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY FROM information_schema.COLUMNS "
            f"WHERE {where} AND EXTRA NOT LIKE '%%GENERATED%%' ORDER BY ORDINAL_POSITION",
            args,
        )
        if not rows:
            raise TableMissing(table, side)
        checks = await fetch(
            conn,
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
            args,
        )
    clauses = " ".join(str(c[0]).lower() for c in checks)
    columns = []
    for column, native, _ in rows:
        native = native.decode() if isinstance(native, bytes) else str(native)
        json_checked = f"json_valid(`{column.lower()}`)" in clauses
        columns.append(Column(column, "json" if json_checked else native, "json" if json_checked else
                              kind_of(native)))
    return columns, [r[0] for r in rows if r[2] == "PRI"]


async def check_connection(endpoint: Endpoint, connect_timeout: float) -> None:
    """Connect and run `SELECT 1`, raising the same SyncErrors a sync would (as the source side)."""
    conn = await connect(endpoint, "source", connect_timeout)
    try:
        with boundary("source"):
            async with asyncio.timeout(connect_timeout):
                await fetch(conn, "SELECT 1")
    finally:
        await close(conn, clean=True)

"""SQLite files (aiosqlite: the stdlib driver in a thread) and the boundary where its errors become ours.

`sqlite:///path/to/file.db` names a local file (`sqlite:///data/x.db` is `/data/x.db`); there is no
network, so no connect timeout or refusal: the connect timeout is the wait for a lock instead. A
source opens the file read-only and never creates it: a missing file fails the run with
`源表不存在：<file>` (the table cannot exist when its file does not). A target creates the file (0600).

The path is confined by the connection's file policy like a csv file's (resolved when the connection
is stored and again at every connect; the journal, WAL and shared-memory files beside it too), and
opened by a URI built from the resolved path, so nothing in the url adds URI parameters. A source
connection is read-only twice over: `mode=ro`, and an authorizer that allows only reading (no ATTACH,
no write, no state-changing PRAGMA) whatever SQL a query source sends.

Storage per kind (SQLite has no such types, only affinities): booleans 0/1, dates `YYYY-MM-DD`,
datetimes UTC text `YYYY-MM-DD HH:MM:SS.ffffff+00:00` (sorts in time order), decimals as text in a
`DECIMAL_TEXT(p,s)` column (NUMERIC affinity would round them through a float), JSON as text.
"""

import contextlib
import sqlite3
from pathlib import Path
from urllib.parse import quote

import aiosqlite

from schemas.messages import SQLITE_CANNOT_OPEN, SQLITE_READ_ONLY, SQLITE_URL
from service.connectors.base import Column
from service.connectors.errors import failed, mapped, transient
from service.connectors.sqlite.types import kind_of
from service.security.files import FilePolicy
from service.sync.errors import AccessDenied, ConfigInvalid, Side, SyncError, TableMissing
from service.sync.model import Endpoint
from service.sync.transforms import quote_ident

SIDE_FILES = ("-journal", "-wal", "-shm")
"""Files SQLite opens beside the database; a symlink planted under one of these names is refused too."""
READ_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo"})
"""What a source's own describe asks; every other PRAGMA (they can change state) is denied."""
_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                           sqlite3.SQLITE_RECURSIVE})


def path_of(endpoint: Endpoint) -> Path:
    url = endpoint.url or ""
    if not url.startswith("sqlite://") or len(url) <= len("sqlite://"):
        raise ConfigInvalid(SQLITE_URL)
    return Path("/" + url.removeprefix("sqlite://").lstrip("/"))


def declared_paths(endpoint: Endpoint) -> list[str]:
    """What the file policy must allow before a sqlite connection is stored (registry hook); a url
    without a path is refused like one outside the roots."""
    try:
        return [str(path_of(endpoint))]
    except ConfigInvalid:
        return [""]


def confined_path(files: FilePolicy, endpoint: Endpoint, side: Side) -> Path:
    """The database's real path, allowed by the policy with its side files; a new target file is
    created here 0600 so SQLite (which would make it 0644) only opens it."""
    path = files.resolve(path_of(endpoint))
    for suffix in SIDE_FILES:
        files.resolve(f"{path}{suffix}")
    if side == "target" and files.stat(path) is None and path.parent.is_dir():
        with contextlib.suppress(FileExistsError):
            files.open(path, "xb").close()
    return path


def read_only(action: int, arg1: str | None, _arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    """sqlite3's authorizer on a source connection: reading only, checked as each statement is prepared."""
    if action in _READ_ACTIONS or (action == sqlite3.SQLITE_PRAGMA and arg1 in READ_PRAGMAS):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def map_error(exc: BaseException, side: Side) -> SyncError:
    """Translate an sqlite3 error: a busy database is worth a retry, a missing table is named, what the
    read-only authorizer denied is an AccessDenied naming the action."""
    if isinstance(exc, SyncError):
        return exc
    message = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and message == "not authorized":
        return AccessDenied(SQLITE_READ_ONLY)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return transient(side, "database is locked")
    if message.startswith("no such table: "):
        return TableMissing(message.removeprefix("no such table: "), side)
    return failed(side, detail=f"{type(exc).__name__}: {message}")


def boundary(side: Side) -> contextlib.AbstractContextManager[None]:
    """Map every sqlite3 (or file) error raised inside the block; our own SyncErrors pass unchanged."""
    return mapped((sqlite3.Error, OSError, ValueError), lambda exc: map_error(exc, side))


async def connect(endpoint: Endpoint, side: Side, connect_timeout: float) -> aiosqlite.Connection:
    """Open the file (read-only for a source) in autocommit mode; transactions are explicit."""
    try:
        path = confined_path(endpoint.policy.files, endpoint, side)
    except OSError as exc:
        raise failed(side, SQLITE_CANNOT_OPEN, detail=type(exc).__name__) from exc
    if side == "source" and not path.is_file():
        raise TableMissing(str(path_of(endpoint)), side)
    uri = f"file:{quote(str(path))}?mode=" + ("ro" if side == "source" else "rw")
    try:
        conn = await aiosqlite.connect(uri, uri=True, timeout=connect_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise failed(side, SQLITE_CANNOT_OPEN, detail=type(exc).__name__) from exc
    with boundary(side):
        await conn.execute("PRAGMA foreign_keys = OFF")
        if side == "target":
            await conn.execute("PRAGMA journal_mode = WAL")
        else:
            await conn.set_authorizer(read_only)
    return conn


async def close(conn: aiosqlite.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close()


async def table_columns(conn: aiosqlite.Connection, table: str, side: Side) -> tuple[list[Column], list[str]]:
    """The table's columns with their kinds (from the declared types) and its primary key columns."""
    schema, _, name = table.rpartition(".")
    pragma = f"PRAGMA {quote_ident(schema)}.table_info({quote_ident(name)})" if schema else \
        f"PRAGMA table_info({quote_ident(name)})"
    with boundary(side):
        rows = list(await conn.execute_fetchall(pragma))
    if not rows:
        raise TableMissing(table, side)
    columns = [Column(r[1], r[2] or "", kind_of(r[2] or "")) for r in rows]
    keys = [r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]
    return columns, keys


async def check_connection(endpoint: Endpoint, connect_timeout: float) -> None:
    """Open the file read-only and run `SELECT 1`, raising the same SyncErrors a sync would."""
    conn = await connect(endpoint, "source", connect_timeout)
    try:
        with boundary("source"):
            await conn.execute_fetchall("SELECT 1")
    finally:
        await close(conn)

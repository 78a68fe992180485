"""SQLite target: each chunk and its checkpoint row (`_batchsync_checkpoints`, in the same file) in one
`BEGIN IMMEDIATE` transaction.

append inserts; upsert uses `INSERT … ON CONFLICT (keys) DO UPDATE`; overwrite fills a staging table
and, at the end, replaces the rows, drops the stage and forgets the checkpoint in one transaction
(SQLite's DDL is transactional), so readers see the old rows or the new ones.
"""

import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any, Self

import aiosqlite

from schemas.api import TargetSpec, WriteMode
from service.connectors.base import Capabilities, Checkpoint, Chunk, Column
from service.connectors.sqlite import boundary, close, connect, table_columns
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint
from service.sync.transforms import quote_ident
from service.sync.types import TO_PYTHON, native_type

log = logging.getLogger(__name__)

CHECKPOINTS = "_batchsync_checkpoints"

_CHECKPOINTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (
    checkpoint_key  TEXT PRIMARY KEY,
    target_table    TEXT NOT NULL,
    chunk           INTEGER NOT NULL,
    position        TEXT NOT NULL,
    records_read    INTEGER NOT NULL,
    records_written INTEGER NOT NULL,
    extra           TEXT NOT NULL,
    updated_at      TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)"""

_SAVE_CHECKPOINT = f"""
INSERT INTO {CHECKPOINTS} (checkpoint_key, target_table, chunk, position, records_read, records_written, extra)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (checkpoint_key) DO UPDATE SET chunk = excluded.chunk, position = excluded.position,
    records_read = excluded.records_read, records_written = excluded.records_written, extra = excluded.extra,
    updated_at = CURRENT_TIMESTAMP"""


def _datetime_text(value: Any) -> str:
    return TO_PYTHON["datetime"](value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def _date_text(value: Any) -> str:
    return TO_PYTHON["date"](value).isoformat()


def _decimal_text(value: Any) -> str:
    return str(TO_PYTHON["decimal"](value))


def _flag(value: Any) -> int:
    return int(TO_PYTHON["bool"](value))


_ADAPT: dict[str, Callable[[Any], Any]] = {"datetime": _datetime_text, "date": _date_text, "decimal": _decimal_text,
                                           "bool": _flag, "json": TO_PYTHON["json"], "binary": TO_PYTHON["binary"]}
"""How a canonical value is stored (see `service.connectors.sqlite`)."""


def _adapter(kinds: Sequence[str | None]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    steps = [_ADAPT.get(kind or "") for kind in kinds]
    return lambda row: tuple([v if f is None or v is None else f(v) for f, v in zip(steps, row, strict=True)])


class SQLiteTarget:
    capabilities = Capabilities(upsert=True, transactional_checkpoint=True)

    def __init__(self, endpoint: Endpoint, spec: TargetSpec, connect_timeout: float) -> None:
        self._endpoint, self._spec, self._timeout = endpoint, spec, connect_timeout
        self._conn: aiosqlite.Connection | None = None
        self._kinds: dict[str, str | None] = {}
        self._insert = ""
        self._adapt: Callable[[Sequence[Any]], tuple[Any, ...]] | None = None

    async def __aenter__(self) -> Self:
        self._conn = await connect(self._endpoint, "target", self._timeout)
        with boundary("target"):
            await self._conn.execute(_CHECKPOINTS_DDL)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await close(self._conn)

    @property
    def conn(self) -> aiosqlite.Connection:
        assert self._conn is not None, "target used outside its context"
        return self._conn

    def _stage(self, key: str) -> str:
        schema, _, _ = self._spec.table.rpartition(".")
        name = f"_batchsync_stage_{key.replace('-', '')[:20]}"
        return quote_ident(f"{schema}.{name}" if schema else name)

    async def describe(self) -> list[Column]:
        columns, _ = await table_columns(self.conn, self._spec.table, "target")
        self._kinds = {c.name: c.kind for c in columns}
        return columns

    async def create_table(self, columns: list[Column]) -> None:
        """Create the missing target table through the type mapping; `keyColumns` become the primary key."""
        keys = self._spec.key_columns or []
        missing = [k for k in keys if k not in {c.name for c in columns}]
        if missing:
            raise ConfigInvalid(f"键列未出现在映射结果中：{', '.join(missing)}")
        defs = [f"{quote_ident(c.name)} {native_type('sqlite', c.kind or 'string', c.sql_type)}" for c in columns]
        if keys:
            defs.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in keys)})")
        with boundary("target"):
            await self.conn.execute(f"CREATE TABLE IF NOT EXISTS {quote_ident(self._spec.table)} ({', '.join(defs)})")

    async def read_checkpoint(self, key: str) -> Checkpoint | None:
        with boundary("target"):
            rows = list(await self.conn.execute_fetchall(
                f"SELECT chunk, position, records_read, records_written, extra FROM {CHECKPOINTS} "
                "WHERE checkpoint_key = ?", (key,)))
        if not rows:
            return None
        chunk, position, read, written, extra = rows[0]
        return Checkpoint(chunk=chunk, position=json.loads(position), records_read=read,
                          records_written=written, extra=json.loads(extra))

    async def prepare(self, key: str, columns: list[str]) -> None:
        if not self._kinds:
            await self.describe()
        self._adapt = _adapter([self._kinds.get(c) for c in columns])
        cols = ", ".join(quote_ident(c) for c in columns)
        values = ", ".join(["?"] * len(columns))
        dest, suffix = quote_ident(self._spec.table), ""
        with boundary("target"):
            if self._spec.mode is WriteMode.UPSERT:
                keys = self._spec.key_columns or []
                missing = [k for k in keys if k not in columns]
                if missing:
                    raise ConfigInvalid(f"upsert 键列未出现在映射结果中：{', '.join(missing)}")
                others = [quote_ident(c) for c in columns if c not in keys]
                action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in others) if others else \
                    "DO NOTHING"
                suffix = f" ON CONFLICT ({', '.join(quote_ident(k) for k in keys)}) {action}"
            elif self._spec.mode is WriteMode.OVERWRITE:
                dest = self._stage(key)
                await self.conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {dest} AS SELECT {cols} FROM {quote_ident(self._spec.table)} WHERE 0"
                )
        self._insert = f"INSERT INTO {dest} ({cols}) VALUES ({values}){suffix}"

    async def write(self, key: str, chunk: Chunk, previous: Checkpoint) -> Checkpoint | None:
        if chunk.stream is not None:
            raise ConfigInvalid("SQLite 目标不接受原始 COPY 流")
        assert self._adapt is not None, "write before prepare"
        rows = [self._adapt(row) for row in chunk.rows or []]
        with boundary("target"):
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                done = list(await self.conn.execute_fetchall(
                    f"SELECT chunk FROM {CHECKPOINTS} WHERE checkpoint_key = ?", (key,)))
                if done and done[0][0] >= chunk.number:
                    await self.conn.execute("ROLLBACK")
                    return None
                await self.conn.executemany(self._insert, rows)
                checkpoint = Checkpoint(
                    chunk=chunk.number, position=chunk.position, records_read=previous.records_read + len(rows),
                    records_written=previous.records_written + len(rows), extra=previous.extra,
                )
                await self.conn.execute(_SAVE_CHECKPOINT, (
                    key, self._spec.table, checkpoint.chunk, json.dumps(checkpoint.position),
                    checkpoint.records_read, checkpoint.records_written, json.dumps(checkpoint.extra),
                ))
                await self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    await self.conn.execute("ROLLBACK")
                raise
        return checkpoint

    async def finish(self, key: str, columns: list[str]) -> None:
        table, cols = quote_ident(self._spec.table), ", ".join(quote_ident(c) for c in columns)
        with boundary("target"):
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                if self._spec.mode is WriteMode.OVERWRITE:
                    stage = self._stage(key)
                    await self.conn.execute(f"DELETE FROM {table}")
                    await self.conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage}")
                    await self.conn.execute(f"DROP TABLE {stage}")
                await self.conn.execute(f"DELETE FROM {CHECKPOINTS} WHERE checkpoint_key = ?", (key,))
                await self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    await self.conn.execute("ROLLBACK")
                raise

    async def abandon(self, key: str) -> None:
        try:
            await self.conn.execute(f"DROP TABLE IF EXISTS {self._stage(key)}")
            await self.conn.execute(f"DELETE FROM {CHECKPOINTS} WHERE checkpoint_key = ?", (key,))
        except Exception as exc:
            log.warning("could not clean up after a cancelled run: %s", type(exc).__name__)

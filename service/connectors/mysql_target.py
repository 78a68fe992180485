"""MySQL/MariaDB target: batched multi-row INSERTs per chunk, committed with its checkpoint row in
`_batchsync_checkpoints` in one InnoDB transaction.

append inserts into the table; upsert uses `INSERT … ON DUPLICATE KEY UPDATE`; overwrite fills a staging
table and, at the end, replaces the rows with DELETE + INSERT … SELECT and forgets the checkpoint in one
transaction (a `RENAME TABLE` swap would be DDL and commit on its own, so a crash between swap and
checkpoint could not be told apart). Readers see the old rows or the new ones, never a half-empty table.
"""

import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Self

import asyncmy

from schemas.api import TargetSpec, WriteMode
from service.connectors.base import Capabilities, Checkpoint, Chunk, Column
from service.connectors.mysql import boundary, close, connect, fetch, quote_ident, table_columns
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint
from service.sync.types import TO_PYTHON, native_type

log = logging.getLogger(__name__)

CHECKPOINTS = "_batchsync_checkpoints"

_CHECKPOINTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (
    checkpoint_key  CHAR(36) NOT NULL PRIMARY KEY,
    target_table    VARCHAR(200) NOT NULL,
    chunk           INT NOT NULL,
    position        LONGTEXT NOT NULL,
    records_read    BIGINT NOT NULL,
    records_written BIGINT NOT NULL,
    extra           LONGTEXT NOT NULL,
    updated_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

_SAVE_CHECKPOINT = f"""
INSERT INTO {CHECKPOINTS} (checkpoint_key, target_table, chunk, position, records_read, records_written, extra)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON DUPLICATE KEY UPDATE chunk = VALUES(chunk), position = VALUES(position), records_read = VALUES(records_read),
    records_written = VALUES(records_written), extra = VALUES(extra), updated_at = CURRENT_TIMESTAMP(6)"""

_KEY_TYPES = {"string": "varchar(255)", "binary": "varbinary(255)", "json": "varchar(255)"}
"""Key columns need a bounded length in an InnoDB index."""


def _naive_utc(value: Any) -> Any:
    if type(value) is datetime:
        return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    return TO_PYTHON["datetime"](value).replace(tzinfo=None)


def _flag(value: Any) -> int:
    return int(value) if type(value) is bool else int(TO_PYTHON["bool"](value))


def _json(value: Any) -> Any:
    return value if type(value) is str else TO_PYTHON["json"](value)


def _decimal(value: Any) -> Any:
    return value if type(value) is Decimal else TO_PYTHON["decimal"](value)


def _date(value: Any) -> Any:
    return value if type(value) is date else TO_PYTHON["date"](value)


_ADAPT: dict[str, Callable[[Any], Any]] = {"datetime": _naive_utc, "bool": _flag, "json": _json,
                                           "decimal": _decimal, "date": _date}
"""How a value is stored: DATETIME as naive UTC, booleans as 0/1, JSON as text; the common case (the
value already has the stored type) costs one type check."""


def _adapter(kinds: Sequence[str | None]) -> Callable[[Sequence[Any]], tuple[Any, ...]] | None:
    steps = [_ADAPT.get(kind or "") for kind in kinds]
    if not any(steps):
        return None
    return lambda row: tuple([v if f is None or v is None else f(v) for f, v in zip(steps, row, strict=True)])


class MySQLTarget:
    capabilities = Capabilities(upsert=True, transactional_checkpoint=True)

    def __init__(self, endpoint: Endpoint, spec: TargetSpec, connect_timeout: float) -> None:
        self._endpoint, self._spec, self._timeout = endpoint, spec, connect_timeout
        self._conn: asyncmy.Connection | None = None
        self._kinds: dict[str, str | None] = {}
        self._insert = ""
        self._adapt: Callable[[Sequence[Any]], tuple[Any, ...]] | None = None

    async def __aenter__(self) -> Self:
        self._conn = await connect(self._endpoint, "target", self._timeout)
        with boundary("target"):
            await self._execute(_CHECKPOINTS_DDL)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await close(self._conn, clean=exc_type is None)

    @property
    def conn(self) -> asyncmy.Connection:
        assert self._conn is not None, "target used outside its context"
        return self._conn

    async def _execute(self, sql: str, args: Any = None) -> int:
        async with self.conn.cursor() as cur:
            return int(await cur.execute(sql, args))

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
        defs = []
        for column in columns:
            kind = column.kind or "string"
            spelled = _KEY_TYPES.get(kind) if column.name in keys else None
            defs.append(f"{quote_ident(column.name)} {spelled or native_type('mysql', kind, column.sql_type)}")
        if keys:
            defs.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in keys)})")
        with boundary("target", self._spec.table):
            await self._execute(f"CREATE TABLE IF NOT EXISTS {quote_ident(self._spec.table)} ({', '.join(defs)}) "
                                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")

    async def read_checkpoint(self, key: str) -> Checkpoint | None:
        with boundary("target"):
            rows = await fetch(self.conn, f"SELECT chunk, position, records_read, records_written, extra "
                                          f"FROM {CHECKPOINTS} WHERE checkpoint_key = %s", (key,))
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
        values = ", ".join(["%s"] * len(columns))
        mode = self._spec.mode
        dest = quote_ident(self._spec.table)
        suffix = ""
        with boundary("target", self._spec.table):
            if mode is WriteMode.UPSERT:
                keys = self._spec.key_columns or []
                missing = [k for k in keys if k not in columns]
                if missing:
                    raise ConfigInvalid(f"upsert 键列未出现在映射结果中：{', '.join(missing)}")
                others = [quote_ident(c) for c in columns if c not in keys] or [quote_ident(keys[0])]
                suffix = " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in others)
            elif mode is WriteMode.OVERWRITE:
                dest = self._stage(key)
                await self._execute(f"CREATE TABLE IF NOT EXISTS {dest} LIKE {quote_ident(self._spec.table)}")
        self._insert = f"INSERT INTO {dest} ({cols}) VALUES ({values}){suffix}"

    async def write(self, key: str, chunk: Chunk, previous: Checkpoint) -> Checkpoint | None:
        if chunk.stream is not None:
            raise ConfigInvalid("MySQL 目标不接受原始 COPY 流")
        rows = chunk.rows or []
        if self._adapt is not None:
            rows = [self._adapt(row) for row in rows]
        with boundary("target", self._spec.table):
            await self.conn.begin()
            try:
                done = await fetch(self.conn, f"SELECT chunk FROM {CHECKPOINTS} WHERE checkpoint_key = %s FOR UPDATE",
                                   (key,))
                if done and done[0][0] >= chunk.number:
                    await self.conn.rollback()
                    return None
                if rows:
                    async with self.conn.cursor() as cur:
                        await cur.executemany(self._insert, rows)
                checkpoint = Checkpoint(
                    chunk=chunk.number, position=chunk.position, records_read=previous.records_read + len(rows),
                    records_written=previous.records_written + len(rows), extra=previous.extra,
                )
                await self._execute(_SAVE_CHECKPOINT, (
                    key, self._spec.table, checkpoint.chunk, json.dumps(checkpoint.position),
                    checkpoint.records_read, checkpoint.records_written, json.dumps(checkpoint.extra),
                ))
                await self.conn.commit()
            except BaseException:
                self.conn.close()
                raise
        return checkpoint

    async def finish(self, key: str, columns: list[str]) -> None:
        table, cols = quote_ident(self._spec.table), ", ".join(quote_ident(c) for c in columns)
        overwrite = self._spec.mode is WriteMode.OVERWRITE
        with boundary("target", self._spec.table):
            await self.conn.begin()
            if overwrite:
                await self._execute(f"DELETE FROM {table}")
                await self._execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {self._stage(key)}")
            await self._execute(f"DELETE FROM {CHECKPOINTS} WHERE checkpoint_key = %s", (key,))
            await self.conn.commit()
            if overwrite:
                await self._execute(f"DROP TABLE IF EXISTS {self._stage(key)}")

    async def abandon(self, key: str) -> None:
        try:
            await self._execute(f"DROP TABLE IF EXISTS {self._stage(key)}")
            await self._execute(f"DELETE FROM {CHECKPOINTS} WHERE checkpoint_key = %s", (key,))
        except Exception as exc:
            log.warning("could not clean up after a cancelled run: %s", type(exc).__name__)

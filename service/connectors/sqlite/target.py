"""SQLite target: each chunk and its checkpoint row (`_batchsync_checkpoints`, in the same file) in one
`BEGIN IMMEDIATE` transaction.

append inserts; upsert uses `INSERT … ON CONFLICT (keys) DO UPDATE`; overwrite fills a staging table
and, at the end, replaces the rows, drops the stage and forgets the checkpoint in one transaction
(SQLite's DDL is transactional), so readers see the old rows or the new ones.
"""

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Self

from typing_extensions import override

from service.connectors.base import Capabilities, Column
from service.connectors.sql.target import (
    CHECKPOINTS,
    FINISHED_KEPT_DAYS,
    SQLTarget,
    checkpoints_ddl,
    forget_finished_sql,
)
from service.connectors.sqlite.connection import boundary, close, connect, table_columns
from service.connectors.sqlite.types import TYPES
from service.sync.transforms import quote_ident
from service.sync.types import TO_PYTHON

_CHECKPOINTS_DDL = checkpoints_ddl(
    ("TEXT PRIMARY KEY", "TEXT NOT NULL", "INTEGER NOT NULL", "TEXT NOT NULL", "INTEGER NOT NULL", "INTEGER NOT NULL",
     "TEXT NOT NULL", "TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP"),
)

_SAVE_CHECKPOINT = f"""
INSERT INTO {CHECKPOINTS} (checkpoint_key, target_table, chunk, position, records_read, records_written, extra)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (checkpoint_key) DO UPDATE SET chunk = excluded.chunk, position = excluded.position,
    records_read = excluded.records_read, records_written = excluded.records_written, extra = excluded.extra,
    updated_at = CURRENT_TIMESTAMP"""


def _datetime_text(value: Any) -> str:
    moment: datetime = TO_PYTHON["datetime"](value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def _date_text(value: Any) -> str:
    day: date = TO_PYTHON["date"](value)
    return day.isoformat()


def _decimal_text(value: Any) -> str:
    return str(TO_PYTHON["decimal"](value))


def _flag(value: Any) -> int:
    return int(TO_PYTHON["bool"](value))


_ADAPT: dict[str, Callable[[Any], Any]] = {"datetime": _datetime_text, "date": _date_text, "decimal": _decimal_text,
                                           "bool": _flag, "json": TO_PYTHON["json"], "binary": TO_PYTHON["binary"]}
"""How a canonical value is stored (see `service.connectors.sqlite.connection`)."""


class SQLiteTarget(SQLTarget):
    capabilities = Capabilities(transactional_checkpoint=True, types=TYPES)
    system = "SQLite"
    save_checkpoint_sql = _SAVE_CHECKPOINT
    forget_finished_sql = forget_finished_sql("?", f"datetime('now', '-{FINISHED_KEPT_DAYS} days')")
    adapt_steps = _ADAPT
    quote = staticmethod(quote_ident)

    async def __aenter__(self) -> Self:
        self._conn = await connect(self._endpoint, "target", self._timeout)
        await self._ensure_checkpoints(_CHECKPOINTS_DDL)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await close(self._conn)

    @override
    def _boundary(self, table: str | None = None) -> contextlib.AbstractContextManager[None]:
        return boundary("target")

    async def _table_columns(self) -> list[Column]:
        columns, _ = await table_columns(self.conn, self._spec.table, "target")
        return columns

    @override
    def _spell(self, column: Column, keys: list[str]) -> str:
        return TYPES.spell(column.kind or "string", column.sql_type)

    def _upsert_clause(self, columns: list[str], keys: list[str]) -> str:
        others = [quote_ident(c) for c in columns if c not in keys]
        action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in others) if others else "DO NOTHING"
        return f" ON CONFLICT ({', '.join(quote_ident(k) for k in keys)}) {action}"

    async def _create_stage(self, stage: str, cols: str) -> None:
        await self._execute(f"CREATE TABLE IF NOT EXISTS {stage} AS SELECT {cols} FROM {quote_ident(self._spec.table)} "
                            "WHERE 0")

    def _refused(self, exc: BaseException) -> str | None:
        """A constraint (NOT NULL, CHECK, UNIQUE, a foreign key) is one row's fault; SQLite takes any value."""
        return str(exc) if isinstance(exc, sqlite3.IntegrityError) else None

    async def _execute(self, sql: str, args: Sequence[Any] | None = None) -> None:
        await self.conn.execute(sql, args)

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        return list(await self.conn.execute_fetchall(sql, args))

    async def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self.conn.executemany(sql, rows)

    async def _begin(self) -> None:
        await self.conn.execute("BEGIN IMMEDIATE")

    async def _commit(self) -> None:
        await self.conn.execute("COMMIT")

    async def _rollback(self) -> None:
        await self.conn.execute("ROLLBACK")

    async def _abort(self) -> None:
        if self.conn.in_transaction:
            await self.conn.execute("ROLLBACK")

"""MySQL/MariaDB target: batched multi-row INSERTs per chunk, committed with its checkpoint row in
`_batchsync_checkpoints` in one InnoDB transaction.

append inserts into the table; upsert uses `INSERT … ON DUPLICATE KEY UPDATE`; overwrite fills a staging
table and, at the end, replaces the rows with DELETE + INSERT … SELECT and forgets the checkpoint in one
transaction (a `RENAME TABLE` swap would be DDL and commit on its own, so a crash between swap and
checkpoint could not be told apart). Readers see the old rows or the new ones, never a half-empty table.
"""

import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Self

from typing_extensions import override

from service.connectors.base import Capabilities, Column
from service.connectors.mysql.connection import boundary, close, connect, fetch, quote_ident, table_columns
from service.connectors.mysql.types import TYPES
from service.connectors.sql.target import (
    CHECKPOINTS,
    FINISHED_KEPT_DAYS,
    SQLTarget,
    checkpoints_ddl,
    forget_finished_sql,
)
from service.sync.types import TO_PYTHON

_CHECKPOINTS_DDL = checkpoints_ddl(
    ("CHAR(36) NOT NULL PRIMARY KEY", "VARCHAR(200) NOT NULL", "INT NOT NULL", "LONGTEXT NOT NULL", "BIGINT NOT NULL",
     "BIGINT NOT NULL", "LONGTEXT NOT NULL", "DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"),
    " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
)

_SAVE_CHECKPOINT = f"""
INSERT INTO {CHECKPOINTS} (checkpoint_key, target_table, chunk, position, records_read, records_written, extra)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON DUPLICATE KEY UPDATE chunk = VALUES(chunk), position = VALUES(position), records_read = VALUES(records_read),
    records_written = VALUES(records_written), extra = VALUES(extra), updated_at = CURRENT_TIMESTAMP(6)"""

ROW_REFUSALS = frozenset({1048, 1062, 1264, 1265, 1292, 1366, 1406, 1451, 1452, 1690, 3819, 4025})
"""Server errors one row causes: NULL into NOT NULL, a duplicate key, a value out of range, truncated, of the
wrong form or too long (strict mode), a foreign key, a CHECK constraint (MySQL 3819, MariaDB 4025)."""

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


class MySQLTarget(SQLTarget):
    capabilities = Capabilities(transactional_checkpoint=True, types=TYPES)
    system = "MySQL"
    placeholder = "%s"
    row_lock = " FOR UPDATE"
    transactional_ddl = False
    save_checkpoint_sql = _SAVE_CHECKPOINT
    forget_finished_sql = forget_finished_sql("%s", f"NOW(6) - INTERVAL {FINISHED_KEPT_DAYS} DAY")
    table_suffix = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    adapt_steps = _ADAPT
    quote = staticmethod(quote_ident)

    async def __aenter__(self) -> Self:
        self._conn = await connect(self._endpoint, "target", self._timeout)
        await self._ensure_checkpoints(_CHECKPOINTS_DDL)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await close(self._conn, clean=exc_type is None)

    def _boundary(self, table: str | None = None) -> contextlib.AbstractContextManager[None]:
        return boundary("target", table)

    def _refused(self, exc: BaseException) -> str | None:
        args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
        code = args[0] if args and isinstance(args[0], int) else None
        return str(args[1]) if code in ROW_REFUSALS and len(args) > 1 else None

    async def _table_columns(self) -> list[Column]:
        columns, _ = await table_columns(self.conn, self._spec.table, "target")
        return columns

    def _spell(self, column: Column, keys: list[str]) -> str:
        kind = column.kind or "string"
        spelled = _KEY_TYPES.get(kind) if column.name in keys else None
        return spelled or TYPES.spell(kind, column.sql_type)

    def _upsert_clause(self, columns: list[str], keys: list[str]) -> str:
        others = [quote_ident(c) for c in columns if c not in keys] or [quote_ident(keys[0])]
        return " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in others)

    @override
    async def _create_stage(self, stage: str, cols: str) -> None:
        await self._execute(f"CREATE TABLE IF NOT EXISTS {stage} LIKE {quote_ident(self._spec.table)}")

    async def _execute(self, sql: str, args: Sequence[Any] | None = None) -> None:
        async with self.conn.cursor() as cur:
            await cur.execute(sql, args)

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        return list(await fetch(self.conn, sql, args))

    async def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(sql, rows)

    async def _begin(self) -> None:
        await self.conn.begin()

    async def _commit(self) -> None:
        await self.conn.commit()

    async def _rollback(self) -> None:
        await self.conn.rollback()

    async def _abort(self) -> None:
        """Drop the connection: a failed statement may have left a result unread on it."""
        self.conn.close()

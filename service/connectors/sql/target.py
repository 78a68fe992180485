"""What every SQL target does the same way: the checkpoint table beside the rows, the overwrite staging
table, created tables and key checks; and, for targets that insert decoded rows (MySQL, SQLite), the whole
write path: a chunk and its checkpoint in one transaction, a replayed chunk recognised and skipped, the
staged rows swapped in with the checkpoint forgotten at the end.

A sliced overwrite (docs/spec.md §10) stages each slice under its own checkpoint key (`stage_finished`) and
publishes every stage in one transaction after the last slice (`publish_stages`), as `finish` publishes one.

A dialect supplies its SQL spellings and transaction calls as hooks (`mysql/target.py`,
`sqlite/target.py`); PostgreSQL COPYs instead of inserting and uses only the module functions.
"""

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from schemas.api import TargetSpec, WriteMode
from schemas.messages import KEY_COLUMNS, UPSERT_KEY_COLUMNS, columns_not_mapped, copy_refused, row_refused
from service.connectors.base import Capabilities, Checkpoint, Chunk, Column, RejectedRow
from service.sync.errors import ConfigInvalid, TargetFailed
from service.sync.model import Endpoint
from service.sync.rejects import halve, row_of

log = logging.getLogger(__name__)

CHECKPOINTS = "_batchsync_checkpoints"
CHECKPOINT_COLUMNS = ("checkpoint_key", "target_table", "chunk", "position", "records_read", "records_written",
                      "extra", "updated_at")

Adapter = Callable[[Sequence[Any]], tuple[Any, ...]]

FINISHED_KEPT_DAYS = 7
"""Finished checkpoints of a table are kept this long (a run whose outcome was not recorded within it
would be written again), then removed when a later run of the same table finishes."""


def forget_finished_sql(placeholder: str, older_than: str) -> str:
    """Delete a table's other finished checkpoints older than `older_than` (a dialect's SQL expression)."""
    return (f"DELETE FROM {CHECKPOINTS} WHERE target_table = {placeholder} AND checkpoint_key <> {placeholder} "
            f"AND extra LIKE {placeholder} AND updated_at < {older_than}")


FINISHED_PATTERN = '%"finished": true%'
"""How a finished checkpoint's `extra` reads as JSON text (`json.dumps` spacing)."""


def checkpoints_ddl(types: Sequence[str], suffix: str = "") -> str:
    """The checkpoint table, its columns (`CHECKPOINT_COLUMNS`) spelled in the dialect's `types`."""
    defs = ",\n    ".join(f"{name:<15} {spelled}" for name, spelled in zip(CHECKPOINT_COLUMNS, types, strict=True))
    return f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (\n    {defs}\n){suffix}"


def checkpoint_args(key: str, table: str, checkpoint: Checkpoint) -> tuple[Any, ...]:
    """The parameters of a dialect's checkpoint upsert, in `CHECKPOINT_COLUMNS` order (up to `extra`)."""
    return (key, table, checkpoint.chunk, json.dumps(checkpoint.position), checkpoint.records_read,
            checkpoint.records_written, json.dumps(checkpoint.extra))


def checkpoint_of(chunk: int, position: str, read: int, written: int, extra: str) -> Checkpoint:
    """A stored checkpoint row (position and extra as JSON text) as a Checkpoint."""
    return Checkpoint(chunk=chunk, position=json.loads(position), records_read=read, records_written=written,
                      extra=json.loads(extra))


def staged(last: Checkpoint) -> Checkpoint:
    """A slice's last checkpoint marked staged: its rows wait in its stage for `publish_stages`."""
    return replace(last, extra={**last.extra, "staged": True})


def to_publish(keys: Sequence[str], found: dict[str, Checkpoint]) -> dict[str, Checkpoint]:
    """The staged checkpoints of a sliced overwrite's `keys` (`found`: their stored checkpoints); empty when
    every key is finished already (published: nothing to do again). TargetFailed when a key is neither staged
    nor finished, or some are finished and others not: publishing then would replace the table with part of
    the slices."""
    if all(key in found and found[key].finished for key in keys):
        return {}
    waiting = [key for key in keys if key not in found or found[key].finished or not found[key].extra.get("staged")]
    if waiting:
        raise TargetFailed(detail=f"slices not staged, not published: {', '.join(waiting)}")
    return {key: found[key] for key in keys}


def stage_parts(table: str, key: str) -> tuple[str | None, str]:
    """The overwrite staging table, beside the target table and named after the checkpoint chain."""
    schema, _, _ = table.rpartition(".")
    return schema or None, f"_batchsync_stage_{key.replace('-', '')[:20]}"


def require_keys(keys: Sequence[str], columns: Sequence[str], label: str = KEY_COLUMNS) -> None:
    """Key columns must be among the mapped columns, or the key (primary or upsert) cannot be built."""
    missing = [k for k in keys if k not in columns]
    if missing:
        raise ConfigInvalid(columns_not_mapped(label, missing))


def create_table_sql(
    table: str, columns: list[Column], keys: list[str], spell: Callable[[Column], str], quote: Callable[[str], str],
    suffix: str = "",
) -> str:
    """A missing target table through the type mapping (`spell`); `keys` become the primary key."""
    require_keys(keys, [c.name for c in columns])
    defs = [f"{quote(c.name)} {spell(c)}" for c in columns]
    if keys:
        defs.append(f"PRIMARY KEY ({', '.join(quote(k) for k in keys)})")
    return f"CREATE TABLE IF NOT EXISTS {quote(table)} ({', '.join(defs)}){suffix}"


def adapter(steps_by_kind: dict[str, Callable[[Any], Any]], kinds: Sequence[str | None]) -> Adapter | None:
    """A row function storing each value as its column's kind wants it (None passes), or None when no
    column needs a step."""
    steps = [steps_by_kind.get(kind or "") for kind in kinds]
    if not any(steps):
        return None
    return lambda row: tuple([v if f is None or v is None else f(v) for f, v in zip(steps, row, strict=True)])


class SQLTarget:
    """A target that inserts decoded rows with `executemany`; subclasses connect and supply the hooks."""

    capabilities = Capabilities(transactional_checkpoint=True)
    """Each dialect adds its type map (`<kind>/types.py`)."""
    system = ""
    """The system's name in messages (`copy_refused` in schemas/messages.py)."""
    placeholder = "?"
    row_lock = ""
    """What locks the checkpoint row when the transaction's begin did not already (`FOR UPDATE`)."""
    transactional_ddl = True
    """Whether DROP TABLE can join the swap's transaction (MySQL's DDL commits on its own)."""
    save_checkpoint_sql = ""
    forget_finished_sql = ""
    table_suffix = ""
    """Table options after a created table's column list."""
    adapt_steps: dict[str, Callable[[Any], Any]] = {}
    """How a canonical value of a kind is stored in this system (see `adapter`)."""

    def __init__(self, endpoint: Endpoint, spec: TargetSpec, connect_timeout: float) -> None:
        self._endpoint, self._spec, self._timeout = endpoint, spec, connect_timeout
        self._conn: Any = None
        self._kinds: dict[str, str | None] = {}
        self._insert = ""
        self._adapt: Adapter | None = None
        self._tolerant = False

    def tolerate_bad_rows(self) -> None:
        """Rows the database refuses (`_refused`) are found by halving the chunk in savepoints and set aside."""
        self._tolerant = True

    @property
    def conn(self) -> Any:
        assert self._conn is not None, "target used outside its context"
        return self._conn

    # Dialect hooks.

    @staticmethod
    def quote(name: str) -> str:
        raise NotImplementedError

    def _refused(self, exc: BaseException) -> str | None:  # noqa: ARG002 (a dialect without refusals)
        """The database's reason when `exc` is a single row's fault (a bad value, a constraint), else None."""
        return None

    def _boundary(self, table: str | None = None) -> contextlib.AbstractContextManager[None]:
        """The target's error boundary; `table` names the table a missing-table error is about."""
        raise NotImplementedError

    async def _table_columns(self) -> list[Column]:
        raise NotImplementedError

    def _spell(self, column: Column, keys: list[str]) -> str:
        """The column type of a created table's column."""
        raise NotImplementedError

    def _upsert_clause(self, columns: list[str], keys: list[str]) -> str:
        raise NotImplementedError

    async def _create_stage(self, stage: str, cols: str) -> None:
        """An empty staging table with the target table's types for the mapped columns `cols`."""
        raise NotImplementedError

    async def _execute(self, sql: str, args: Sequence[Any] | None = None) -> None:
        raise NotImplementedError

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        raise NotImplementedError

    async def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    async def _begin(self) -> None:
        raise NotImplementedError

    async def _commit(self) -> None:
        raise NotImplementedError

    async def _rollback(self) -> None:
        raise NotImplementedError

    async def _abort(self) -> None:
        """Undo after a failure inside a transaction (which may have left the connection unusable)."""
        raise NotImplementedError

    # Shared behaviour.

    async def _ensure_checkpoints(self, ddl: str) -> None:
        with self._boundary():
            await self._execute(ddl)

    def _stage(self, key: str) -> str:
        schema, name = stage_parts(self._spec.table, key)
        return self.quote(f"{schema}.{name}" if schema else name)

    async def count_rows(self) -> int:
        """The target table's rows, for a full run's reconciliation."""
        with self._boundary(self._spec.table):
            rows = await self._fetch(f"SELECT COUNT(*) FROM {self.quote(self._spec.table)}", ())
        return int(rows[0][0])

    async def describe(self) -> list[Column]:
        columns = await self._table_columns()
        self._kinds = {c.name: c.kind for c in columns}
        return columns

    async def create_table(self, columns: list[Column]) -> None:
        """Create the missing target table through the type mapping; `keyColumns` become the primary key."""
        keys = self._spec.key_columns or []
        sql = create_table_sql(self._spec.table, columns, keys, lambda c: self._spell(c, keys), self.quote,
                               self.table_suffix)
        with self._boundary(self._spec.table):
            await self._execute(sql)

    async def read_checkpoint(self, key: str) -> Checkpoint | None:
        with self._boundary():
            rows = await self._fetch(f"SELECT chunk, position, records_read, records_written, extra "
                                     f"FROM {CHECKPOINTS} WHERE checkpoint_key = {self.placeholder}", (key,))
        return checkpoint_of(*rows[0]) if rows else None

    async def prepare(self, key: str, columns: list[str]) -> None:
        if not self._kinds:
            await self.describe()
        self._adapt = adapter(self.adapt_steps, [self._kinds.get(c) for c in columns])
        cols = ", ".join(self.quote(c) for c in columns)
        values = ", ".join([self.placeholder] * len(columns))
        dest, suffix = self.quote(self._spec.table), ""
        with self._boundary(self._spec.table):
            if self._spec.mode is WriteMode.UPSERT:
                keys = self._spec.key_columns or []
                require_keys(keys, columns, UPSERT_KEY_COLUMNS)
                suffix = self._upsert_clause(columns, keys)
            elif self._spec.mode is WriteMode.OVERWRITE:
                dest = self._stage(key)
                await self._create_stage(dest, cols)
        self._insert = f"INSERT INTO {dest} ({cols}) VALUES ({values}){suffix}"

    async def write(self, key: str, chunk: Chunk, previous: Checkpoint) -> Checkpoint | None:
        if chunk.stream is not None:
            raise ConfigInvalid(copy_refused(self.system))
        assert self._insert, "write before prepare"
        rows = chunk.rows or []
        if self._adapt is not None:
            rows = [self._adapt(row) for row in rows]
        with self._boundary(self._spec.table):
            await self._begin()
            try:
                done = await self._fetch(f"SELECT chunk FROM {CHECKPOINTS} WHERE checkpoint_key = "
                                         f"{self.placeholder}{self.row_lock}", (key,))
                if done and done[0][0] >= chunk.number:
                    await self._rollback()
                    return None
                written = len(rows)
                if rows and self._tolerant:
                    written = await self._insert_tolerant(chunk, rows)
                elif rows:
                    await self._executemany(self._insert, rows)
                checkpoint = previous.after(chunk, len(rows), written)
                await self._execute(self.save_checkpoint_sql, checkpoint_args(key, self._spec.table, checkpoint))
                await self._commit()
            except BaseException:
                await self._abort()
                raise
        return checkpoint

    async def _insert_tolerant(self, chunk: Chunk, rows: list[tuple[Any, ...]]) -> int:
        """Insert `rows`, setting aside on the chunk those the database refuses; the rows written."""

        async def attempt(lo: int, hi: int) -> str | None:
            await self._execute("SAVEPOINT batchsync_rows")
            try:
                await self._executemany(self._insert, rows[lo:hi])
            except Exception as exc:
                reason = self._refused(exc)
                if reason is None:
                    raise
                await self._execute("ROLLBACK TO SAVEPOINT batchsync_rows")
                return row_refused(reason)
            await self._execute("RELEASE SAVEPOINT batchsync_rows")
            return None

        refused = await halve(len(rows), attempt)
        original = chunk.rows or []
        chunk.rejected.extend(RejectedRow(row_of(chunk.columns, original[i]), reason) for i, reason in refused)
        return len(rows) - len(refused)

    async def finish(self, key: str, columns: list[str], last: Checkpoint) -> None:
        """Swap the staged rows in (overwrite) and mark the checkpoint finished in one transaction."""
        table, cols = self.quote(self._spec.table), ", ".join(self.quote(c) for c in columns)
        overwrite = self._spec.mode is WriteMode.OVERWRITE
        with self._boundary(self._spec.table):
            await self._begin()
            try:
                if overwrite:
                    await self._execute(f"DELETE FROM {table}")
                    await self._execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {self._stage(key)}")
                    if self.transactional_ddl:
                        await self._execute(f"DROP TABLE {self._stage(key)}")
                await self._execute(self.save_checkpoint_sql,
                                    checkpoint_args(key, self._spec.table, last.as_finished()))
                await self._execute(self.forget_finished_sql, (self._spec.table, key, FINISHED_PATTERN))
                await self._commit()
            except BaseException:
                await self._abort()
                raise
            if overwrite and not self.transactional_ddl:
                await self._execute(f"DROP TABLE IF EXISTS {self._stage(key)}")

    async def stage_finished(self, key: str, columns: list[str], last: Checkpoint) -> None:  # noqa: ARG002
        """The slice `key` staged all its rows (in its stage, made by `prepare`): `last` is stored marked staged;
        a checkpoint already finished (published) is left as it is."""
        with self._boundary(self._spec.table):
            await self._begin()
            try:
                rows = await self._fetch(f"SELECT extra FROM {CHECKPOINTS} WHERE checkpoint_key = "
                                         f"{self.placeholder}{self.row_lock}", (key,))
                if rows and json.loads(rows[0][0]).get("finished"):
                    await self._rollback()
                    return
                await self._execute(self.save_checkpoint_sql, checkpoint_args(key, self._spec.table, staged(last)))
                await self._commit()
            except BaseException:
                await self._abort()
                raise

    async def publish_stages(self, keys: list[str], columns: list[str]) -> None:
        """One transaction: the slices' checkpoints locked (two publishers queue on them), the table's rows
        replaced with every stage's, each checkpoint marked finished (its counts kept), finished checkpoints
        of old runs forgotten; the stages dropped in it, or after the commit when DDL would commit on its own.
        Nothing is published again when every key is finished (stages a crash left behind are dropped);
        TargetFailed when a key is not staged."""
        table, cols = self.quote(self._spec.table), ", ".join(self.quote(c) for c in columns)
        listed = ", ".join([self.placeholder] * len(keys))
        with self._boundary(self._spec.table):
            await self._begin()
            try:
                rows = await self._fetch(f"SELECT checkpoint_key, chunk, position, records_read, records_written, "
                                         f"extra FROM {CHECKPOINTS} WHERE checkpoint_key IN ({listed}){self.row_lock}",
                                         tuple(keys)) if keys else []
                ready = to_publish(keys, {str(r[0]): checkpoint_of(*r[1:]) for r in rows})
                if not ready:
                    await self._rollback()
                else:
                    await self._execute(f"DELETE FROM {table}")
                    for key in keys:
                        await self._execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {self._stage(key)}")
                        if self.transactional_ddl:
                            await self._execute(f"DROP TABLE {self._stage(key)}")
                    for key, checkpoint in ready.items():
                        await self._execute(self.save_checkpoint_sql,
                                            checkpoint_args(key, self._spec.table, checkpoint.as_finished()))
                    await self._execute(self.forget_finished_sql, (self._spec.table, keys[0], FINISHED_PATTERN))
                    await self._commit()
            except BaseException:
                await self._abort()
                raise
            if not self.transactional_ddl or not ready:
                for key in keys:
                    await self._execute(f"DROP TABLE IF EXISTS {self._stage(key)}")

    async def abandon(self, key: str) -> None:
        try:
            await self._execute(f"DROP TABLE IF EXISTS {self._stage(key)}")
            await self._execute(f"DELETE FROM {CHECKPOINTS} WHERE checkpoint_key = {self.placeholder}", (key,))
        except Exception as exc:
            log.warning("could not clean up after a cancelled run: %s", type(exc).__name__)

"""PostgreSQL target: binary COPY per chunk, committed with its checkpoint row in `_batchsync_checkpoints`.

append copies into the table; upsert copies into a temporary staging table and merges with
`INSERT … ON CONFLICT`, and from its second chunk on merges on a second connection while the next chunk is
staged (`upsert.py`); overwrite fills a durable staging table and swaps its rows in at the end, in one
transaction, so readers see the old rows or the new ones, never a half-empty table.

A sliced overwrite (`SliceStagingTarget`, docs/spec.md §10) stages each slice under its own checkpoint key
(`stage_finished` marks it staged, a held first chunk sent to its stage first) and publishes every stage in
one transaction after the last slice (`publish_stages`): the same lock, DELETE and INSERT … SELECT as `finish`,
once for all the slices.
"""

import json
import logging
from typing import Self

import asyncpg
import asyncpg.exceptions as pgerr

from schemas.api import TargetSpec, WriteMode
from schemas.messages import UPSERT_KEY_COLUMNS
from service.connectors.base import Capabilities, Checkpoint, Chunk, Column
from service.connectors.csv.stream import COPY_CSV
from service.connectors.postgresql.connection import COPY_FORMAT, boundary, close, connect, dsn_of, relation_columns
from service.connectors.postgresql.overwrite import Held, checkpoint_after, hold, publish, released
from service.connectors.postgresql.rejects import TolerantCopy
from service.connectors.postgresql.types import TYPES
from service.connectors.postgresql.upsert import PipelinedUpsert, merge_sql
from service.connectors.sql.target import (
    CHECKPOINTS,
    FINISHED_KEPT_DAYS,
    checkpoint_args,
    checkpoint_of,
    checkpoints_ddl,
    create_table_sql,
    require_keys,
    stage_parts,
    staged,
    to_publish,
)
from service.sync.model import Endpoint
from service.sync.transforms import quote_ident

log = logging.getLogger(__name__)

_UPSERT_STAGE = "_batchsync_upsert_stage"

_CHECKPOINTS_DDL = checkpoints_ddl(
    ("uuid PRIMARY KEY", "text NOT NULL", "integer NOT NULL", "jsonb NOT NULL", "bigint NOT NULL", "bigint NOT NULL",
     "jsonb NOT NULL DEFAULT '{}'", "timestamptz NOT NULL DEFAULT now()"),
)

_SAVE_CHECKPOINT = f"""
INSERT INTO {CHECKPOINTS} AS c (checkpoint_key, target_table, chunk, position, records_read,
                                records_written, extra, updated_at)
VALUES ($1::uuid, $2, $3, $4::jsonb, $5, $6, $7::jsonb, now())
ON CONFLICT (checkpoint_key) DO UPDATE
   SET chunk = EXCLUDED.chunk, position = EXCLUDED.position, records_read = EXCLUDED.records_read,
       records_written = EXCLUDED.records_written, extra = EXCLUDED.extra, updated_at = now()"""


_FORGET_FINISHED = (f"DELETE FROM {CHECKPOINTS} WHERE target_table = $1 AND checkpoint_key <> $2::uuid "
                    f"""AND extra @> '{{"finished": true}}' """
                    f"AND updated_at < now() - interval '{FINISHED_KEPT_DAYS} days'")

_checkpoints_ready: set[str] = set()
"""Target databases where this process already ensured the checkpoint table (a DDL round trip saved)."""


def _copied(status: str) -> int:
    """Rows from a `COPY n` command tag."""
    return int(status.rsplit(" ", 1)[-1])


def _spell(column: Column) -> str:
    return TYPES.spell(column.kind or "string", column.sql_type)


class PostgresTarget:
    capabilities = Capabilities(transactional_checkpoint=True, copy_format=COPY_FORMAT, types=TYPES)

    def __init__(self, endpoint: Endpoint, spec: TargetSpec, connect_timeout: float) -> None:
        self._endpoint, self._spec, self._timeout = endpoint, spec, connect_timeout
        self._conn: asyncpg.Connection | None = None
        self._columns: list[str] = []
        self._merge = ""
        self._upsert: PipelinedUpsert | None = None
        self._held: Held | None = None
        self._previous: Checkpoint | None = None
        self._create_stage = ""
        self._stream_format = COPY_FORMAT
        self._tolerant = False

    def tolerate_bad_rows(self) -> None:
        """Isolate refused rows of a chunk (`rejects.py`); upsert then merges each chunk on this connection
        and overwrite stages every chunk, so a refusal is always met inside a chunk's own transaction."""
        self._tolerant = True

    def accept_stream(self, copy_format: str) -> bool:
        """Chunk streams in CSV (RFC 4180, UTF-8, empty = NULL) are COPYed as PostgreSQL parses CSV."""
        if copy_format not in (COPY_FORMAT, COPY_CSV):
            return False
        self._stream_format = copy_format
        return True

    async def __aenter__(self) -> Self:
        self._conn = await connect(self._endpoint, "target", self._timeout)
        if dsn_of(self._endpoint) not in _checkpoints_ready:
            with boundary("target"):
                try:
                    await self._conn.execute(_CHECKPOINTS_DDL)
                except pgerr.UniqueViolationError:
                    pass  # another run created it concurrently
            _checkpoints_ready.add(dsn_of(self._endpoint))
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        if self._upsert is not None:
            await self._upsert.close(clean=exc_type is None)
        await close(self._conn, clean=exc_type is None)

    @property
    def conn(self) -> asyncpg.Connection:
        assert self._conn is not None, "target used outside its context"
        return self._conn

    def _stage(self, key: str) -> str:
        schema, name = stage_parts(self._spec.table, key)
        return quote_ident(f"{schema}.{name}" if schema else name)

    async def count_rows(self) -> int:
        """The target table's rows, for a full run's reconciliation."""
        with boundary("target"):
            return int(await self.conn.fetchval(f"SELECT count(*) FROM {quote_ident(self._spec.table)}"))

    async def describe(self) -> list[Column]:
        return await relation_columns(self.conn, self._spec.table, "target")

    async def create_table(self, columns: list[Column]) -> None:
        """Create the missing target table through the type mapping; `keyColumns` become the primary key."""
        with boundary("target"):
            await self.conn.execute(
                create_table_sql(self._spec.table, columns, self._spec.key_columns or [], _spell, quote_ident)
            )

    async def read_checkpoint(self, key: str) -> Checkpoint | None:
        with boundary("target"):
            row = await self.conn.fetchrow(f"SELECT * FROM {CHECKPOINTS} WHERE checkpoint_key = $1::uuid", key)
        if row is None:
            return None
        return checkpoint_of(row["chunk"], row["position"], row["records_read"], row["records_written"], row["extra"])

    async def prepare(self, key: str, columns: list[str]) -> None:
        self._columns = columns
        cols = ", ".join(quote_ident(c) for c in columns)
        table = quote_ident(self._spec.table)
        mode = self._spec.mode
        with boundary("target"):
            if mode is WriteMode.UPSERT:
                keys = self._spec.key_columns or []
                require_keys(keys, columns, UPSERT_KEY_COLUMNS)
                await self.conn.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {_UPSERT_STAGE} ON COMMIT DELETE ROWS AS "
                    f"SELECT {cols} FROM {table} WITH NO DATA"
                )
                comparable = await self._comparable_columns()
                self._merge = merge_sql(self._spec.table, _UPSERT_STAGE, columns, keys, comparable)
                if self._tolerant:
                    return
                self._upsert = PipelinedUpsert(self._endpoint, self._spec.table, self._timeout, _SAVE_CHECKPOINT,
                                               lambda stage: merge_sql(self._spec.table, stage, columns, keys,
                                                                       comparable))
            elif mode is WriteMode.OVERWRITE and self._tolerant:  # the target's checks meet each chunk, not the swap
                self._create_stage = f"CREATE TABLE IF NOT EXISTS {self._stage(key)} (LIKE {table} INCLUDING ALL)"
            elif mode is WriteMode.OVERWRITE:  # created with the first staged chunk: a small run never needs it
                self._create_stage = (f"CREATE TABLE IF NOT EXISTS {self._stage(key)} AS "
                                      f"SELECT {cols} FROM {table} WITH NO DATA")

    async def _comparable_columns(self) -> set[str]:
        """Columns whose type has its own `=` operator; the rest (json, xml, …) are compared as text."""
        rows = await self.conn.fetch(
            """SELECT a.attname FROM pg_attribute a
                WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                  AND EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprname = '='
                                 AND o.oprleft = a.atttypid AND o.oprright = a.atttypid)""",
            quote_ident(self._spec.table),
        )
        return {r["attname"] for r in rows}

    async def write(self, key: str, chunk: Chunk, previous: Checkpoint) -> Checkpoint | None:
        if self._spec.mode is WriteMode.OVERWRITE:
            if self._held is not None:  # a second chunk: the held first one goes to the staging table after all
                held, self._held = self._held, None
                assert self._previous is not None
                if await self._write(key, released(held), self._previous) is None:
                    await chunk.drain()
                    return None
            elif (chunk.number == 1 and previous.chunk == 0 and self._stream_format == COPY_FORMAT
                  and not self._tolerant):
                with boundary("target"):
                    kept = await hold(chunk)
                if isinstance(kept, Held):
                    self._held, self._previous = kept, previous
                    return checkpoint_after(previous, kept)
                chunk = kept
        return await self._write(key, chunk, previous)

    async def _write(self, key: str, chunk: Chunk, previous: Checkpoint) -> Checkpoint | None:
        mode = self._spec.mode
        schema: str | None
        if self._upsert is not None:
            if self._upsert.pipelining:
                with boundary("target"):
                    return await self._upsert.write(self.conn, key, chunk, previous, self._stream_format == COPY_CSV)
            self._upsert.pipelining = True  # the first chunk of a run (a small run's only one) merges right here
        if mode is WriteMode.UPSERT:
            schema, dest = None, _UPSERT_STAGE
        elif mode is WriteMode.OVERWRITE:
            schema, dest = stage_parts(self._spec.table, key)
        else:
            schema, _, dest = self._spec.table.rpartition(".")
        with boundary("target"):
            async with self.conn.transaction():
                done = await self.conn.fetchval(
                    f"SELECT chunk FROM {CHECKPOINTS} WHERE checkpoint_key = $1::uuid FOR UPDATE", key
                )
                if done is not None and done >= chunk.number:
                    await chunk.drain()
                    return None
                if self._create_stage:
                    await self.conn.execute(self._create_stage)
                if self._tolerant:
                    upsert = mode is WriteMode.UPSERT
                    read, written = await TolerantCopy(
                        self.conn, dest, schema or None, "csv" if self._stream_format == COPY_CSV else "binary",
                        self._merge if upsert else None, _UPSERT_STAGE if upsert else None).write(chunk)
                elif chunk.stream is not None and self._stream_format == COPY_CSV:
                    await self.conn.execute("SET LOCAL TimeZone = 'UTC'")  # a time without an offset is UTC
                    status = await self.conn.copy_to_table(
                        dest, schema_name=schema or None, source=chunk.stream, columns=chunk.columns, format="csv",
                        force_null=chunk.columns,
                    )
                    written = read = _copied(status)
                elif chunk.stream is not None:
                    status = await self.conn.copy_to_table(
                        dest, schema_name=schema or None, source=chunk.stream, columns=chunk.columns, format="binary"
                    )
                    written = read = _copied(status)
                else:
                    rows = chunk.rows or []
                    await self.conn.copy_records_to_table(
                        dest, schema_name=schema or None, records=rows, columns=chunk.columns
                    )
                    written = read = len(rows)
                if mode is WriteMode.UPSERT and not self._tolerant:
                    await self.conn.execute(self._merge)
                checkpoint = previous.after(chunk, read, written)
                await self.conn.execute(_SAVE_CHECKPOINT, *checkpoint_args(key, self._spec.table, checkpoint))
        self._create_stage = ""
        return checkpoint

    async def finish(self, key: str, columns: list[str], last: Checkpoint) -> None:
        table, cols = quote_ident(self._spec.table), ", ".join(quote_ident(c) for c in columns)
        with boundary("target"):
            if self._upsert is not None:
                await self._upsert.settle()
            async with self.conn.transaction():
                if self._held is not None:
                    await publish(self.conn, self._spec.table, key, self._held)  # held: no checkpoint, no stage
                elif self._spec.mode is WriteMode.OVERWRITE:
                    stage = self._stage(key)
                    await self.conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
                    await self.conn.execute(f"DELETE FROM {table}")
                    if await self.conn.fetchval("SELECT to_regclass($1) IS NOT NULL", stage):  # none: no rows
                        await self.conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage}")
                        await self.conn.execute(f"DROP TABLE {stage}")
                if self._upsert is not None:
                    await self._upsert.drop_stages(self.conn, key)
                await self.conn.execute(_SAVE_CHECKPOINT, *checkpoint_args(key, self._spec.table, last.as_finished()))
                await self.conn.execute(_FORGET_FINISHED, self._spec.table, key)

    async def stage_finished(self, key: str, columns: list[str], last: Checkpoint) -> None:  # noqa: ARG002
        """The slice `key` staged all its rows: a held first chunk goes to its stage (with its checkpoint), then
        `last` is stored marked staged; a checkpoint already finished (published) is left as it is."""
        if self._held is not None:
            held, self._held = self._held, None
            assert self._previous is not None
            await self._write(key, released(held), self._previous)
        with boundary("target"):
            async with self.conn.transaction():
                extra = await self.conn.fetchval(
                    f"SELECT extra FROM {CHECKPOINTS} WHERE checkpoint_key = $1::uuid FOR UPDATE", key)
                if extra is not None and json.loads(extra).get("finished"):
                    return
                await self.conn.execute(_SAVE_CHECKPOINT, *checkpoint_args(key, self._spec.table, staged(last)))

    async def publish_stages(self, keys: list[str], columns: list[str]) -> None:
        """One transaction: lock the table as `finish` does, replace its rows with every existing stage of
        `keys` (a slice without rows has none), drop the stages, mark each checkpoint finished (its counts
        kept). Nothing happens when every key is finished already; TargetFailed when a key is not staged."""
        table, cols = quote_ident(self._spec.table), ", ".join(quote_ident(c) for c in columns)
        with boundary("target"):
            async with self.conn.transaction():
                await self.conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
                rows = await self.conn.fetch(
                    f"SELECT checkpoint_key::text AS k, chunk, position, records_read, records_written, extra "
                    f"FROM {CHECKPOINTS} WHERE checkpoint_key = ANY($1::uuid[]) FOR UPDATE", keys)
                found = {str(r["k"]): checkpoint_of(r["chunk"], r["position"], r["records_read"],
                                                    r["records_written"], r["extra"]) for r in rows}
                ready = to_publish(keys, found)
                if not ready:
                    return
                await self.conn.execute(f"DELETE FROM {table}")
                for key in keys:
                    stage = self._stage(key)
                    if await self.conn.fetchval("SELECT to_regclass($1) IS NOT NULL", stage):
                        await self.conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage}")
                        await self.conn.execute(f"DROP TABLE {stage}")
                for key, checkpoint in ready.items():
                    await self.conn.execute(_SAVE_CHECKPOINT,
                                            *checkpoint_args(key, self._spec.table, checkpoint.as_finished()))
                await self.conn.execute(_FORGET_FINISHED, self._spec.table, keys[0])

    async def abandon(self, key: str) -> None:
        try:
            async with self.conn.transaction():
                await self.conn.execute(f"DROP TABLE IF EXISTS {self._stage(key)}")
                if self._upsert is not None:
                    await self._upsert.close()
                    await self._upsert.drop_stages(self.conn, key)
                await self.conn.execute(f"DELETE FROM {CHECKPOINTS} WHERE checkpoint_key = $1::uuid", key)
        except (pgerr.PostgresError, pgerr.InterfaceError, OSError) as exc:
            log.warning("could not clean up after a cancelled run: %s", type(exc).__name__)

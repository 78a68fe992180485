"""PostgreSQL upsert, pipelined: chunk k is merged on a second connection while chunk k+1 is staged.

The cost of an upsert whose rows all changed is on the server (a row lock, a new tuple version, an index
entry and WAL per row); staging the next chunk (the source's COPY into an unlogged table) overlaps it, so
a run costs about the merges alone instead of merges plus copies (docs/performance.md has the numbers).

Exactly-once is kept the way every chunk keeps it: the merge of a chunk and its checkpoint commit in one
transaction on the merging connection, after the checkpoint row is locked and found behind the chunk. A
staged copy is not durable state: a run that dies between staging and merging re-reads that chunk when
it resumes (the checkpoint is still behind it), and the staging tables are emptied again at `prepare`.
A `write` returns once its chunk is staged and the previous chunk's merge has committed; `settle` waits
for the last one (before `finish`, and when the run ends).

Two unlogged staging tables per checkpoint chain alternate (chunk k uses `_u{k % 2}`): no WAL for rows that
are copied once and read once, and a table is truncated only after the merge that read it committed.
"""

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from service.connectors.base import Checkpoint, Chunk
from service.connectors.postgresql.connection import close, connect
from service.connectors.sql.target import CHECKPOINTS, checkpoint_args, stage_parts
from service.sync.model import Endpoint
from service.sync.transforms import quote_ident

log = logging.getLogger(__name__)

STAGES = 2


def merge_sql(table: str, stage: str, columns: list[str], keys: list[str], comparable: set[str]) -> str:
    """Upsert from `stage`; rows equal to what is already there are not rewritten, which spares re-syncs of
    unchanged data the cost (and bloat) of an MVCC update per row. Columns whose type has no `=` operator
    (json, xml, …) are compared as text."""
    cols = ", ".join(quote_ident(c) for c in columns)
    conflict = ", ".join(quote_ident(k) for k in keys)
    others = [c for c in columns if c not in keys]
    if not others:
        action = "DO NOTHING"
    else:
        updates = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in others)
        cast = {c: "" if c in comparable else "::text" for c in others}
        old = ", ".join(f"t.{quote_ident(c)}{cast[c]}" for c in others)
        new = ", ".join(f"EXCLUDED.{quote_ident(c)}{cast[c]}" for c in others)
        action = f"DO UPDATE SET {updates} WHERE ({old}) IS DISTINCT FROM ({new})"
    return (f"INSERT INTO {quote_ident(table)} AS t ({cols}) SELECT {cols} FROM {stage} "
            f"ON CONFLICT ({conflict}) {action}")


def stage_tables(table: str, key: str) -> list[tuple[str | None, str]]:
    """The (schema, name) of the staging tables of a checkpoint chain, beside the target table."""
    schema, name = stage_parts(table, key)
    return [(schema, f"{name}_u{i}") for i in range(STAGES)]


def _qualified(schema: str | None, name: str) -> str:
    return quote_ident(f"{schema}.{name}" if schema else name)


class PipelinedUpsert:
    """The upsert of PostgresTarget after its first chunk: stages on the target's connection, merges on its own.

    A run's first chunk (a small run's only one) is staged and merged by the target as before, on its one
    connection; `pipelining` is set after it, and the staging tables and the second connection are made
    when the second chunk comes. The second connection is never parked: a run opens one, not every run.
    """

    def __init__(
        self, endpoint: Endpoint, table: str, connect_timeout: float, save_checkpoint: str,
        merge_from: Callable[[str], str],
    ) -> None:
        """`save_checkpoint` is the target's checkpoint upsert (parameters as `checkpoint_args`); `merge_from`
        the merge statement reading a given staging table."""
        self._endpoint, self._table, self._timeout = endpoint, table, connect_timeout
        self._save_checkpoint, self._merge_from = save_checkpoint, merge_from
        self.pipelining = False
        self._merger: asyncpg.Connection | None = None
        self._stages: list[tuple[str | None, str]] = []
        self._merges: list[str] = []
        self._pending: asyncio.Task[None] | None = None

    async def _open(self, conn: asyncpg.Connection, key: str, columns: list[str]) -> None:
        """Create the staging tables (a crashed attempt's are reused: every stage begins with TRUNCATE) and
        open the merging connection."""
        cols = ", ".join(quote_ident(c) for c in columns)
        self._stages = stage_tables(self._table, key)
        for schema, name in self._stages:
            stage = _qualified(schema, name)
            await conn.execute(f"CREATE UNLOGGED TABLE IF NOT EXISTS {stage} AS "
                               f"SELECT {cols} FROM {quote_ident(self._table)} WITH NO DATA")
        self._merges = [self._merge_from(_qualified(s, n)) for s, n in self._stages]
        self._merger = await connect(self._endpoint, "target", self._timeout, reusable=False)

    async def write(
        self, conn: asyncpg.Connection, key: str, chunk: Chunk, previous: Checkpoint, csv: bool
    ) -> Checkpoint | None:
        """Stage `chunk`, wait for the previous merge, start this one; None for a chunk already merged."""
        done = await conn.fetchval(f"SELECT chunk FROM {CHECKPOINTS} WHERE checkpoint_key = $1::uuid", key)
        if done is not None and done >= chunk.number:
            await chunk.drain()
            return None
        if self._merger is None:
            await self._open(conn, key, chunk.columns)
        slot = chunk.number % STAGES
        read = await self._stage(conn, chunk, slot, csv)
        await self.settle()
        checkpoint = previous.after(chunk, read, read)
        self._pending = asyncio.create_task(self._merge(key, slot, checkpoint), name=f"merge-{chunk.number}")
        return checkpoint

    async def _stage(self, conn: asyncpg.Connection, chunk: Chunk, slot: int, csv: bool) -> int:
        schema, name = self._stages[slot]
        async with conn.transaction():
            await conn.execute(f"TRUNCATE {_qualified(schema, name)}")
            if chunk.stream is not None and csv:
                await conn.execute("SET LOCAL TimeZone = 'UTC'")  # a time without an offset is UTC
                status = await conn.copy_to_table(name, schema_name=schema, source=chunk.stream,
                                                  columns=chunk.columns, format="csv", force_null=chunk.columns)
            elif chunk.stream is not None:
                status = await conn.copy_to_table(name, schema_name=schema, source=chunk.stream,
                                                  columns=chunk.columns, format="binary")
            else:
                rows = chunk.rows or []
                await conn.copy_records_to_table(name, schema_name=schema, records=rows, columns=chunk.columns)
                return len(rows)
        return int(status.rsplit(" ", 1)[-1])

    async def _merge(self, key: str, slot: int, checkpoint: Checkpoint) -> None:
        """The chunk's rows and its checkpoint, in one transaction, unless a replay already merged it."""
        merger = self._merger
        assert merger is not None, "merge before the merging connection"
        async with merger.transaction():
            done = await merger.fetchval(
                f"SELECT chunk FROM {CHECKPOINTS} WHERE checkpoint_key = $1::uuid FOR UPDATE", key)
            if done is not None and done >= checkpoint.chunk:
                return
            await merger.execute(self._merges[slot])
            await merger.execute(self._save_checkpoint, *checkpoint_args(key, self._table, checkpoint))

    async def settle(self) -> None:
        """Wait for the merge in flight; its error is this call's (the caller maps it at its boundary)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def drop_stages(self, conn: asyncpg.Connection, key: str) -> None:
        """Inside the caller's transaction (the finish, or abandoning a cancelled run); also those an earlier,
        crashed attempt of the chain left."""
        stages = ", ".join(_qualified(s, n) for s, n in stage_tables(self._table, key))
        await conn.execute(f"DROP TABLE IF EXISTS {stages}")
        self._stages = []

    async def close(self, *, clean: bool = True) -> None:
        """End the merging connection; `clean` is false when the caller is unwinding from an error.

        A merge still in flight gets `connect_timeout` seconds to finish (then the chunk the engine was told is
        written stays written). After that it is let go without waiting for it: its connection is terminated, so
        the server rolls it back, and a resumed run merges that chunk again (harmless for an upsert). Its own
        rollback, or a graceful close, would wait for a server that may be the thing that hung: a frozen database
        held the attempt (and so the retry) until it thawed. Unwinding from an error, the connection is
        terminated as well, never closed gracefully."""
        pending, self._pending = self._pending, None
        merger, self._merger = self._merger, None
        merged = False
        try:
            if pending is not None and not pending.done():
                await asyncio.wait({pending}, timeout=self._timeout)  # not wait_for: it awaits the cancelled merge
            merged = pending is None or (pending.done() and not pending.cancelled() and pending.exception() is None)
        finally:
            if pending is not None and not pending.done():
                if merger is not None:
                    merger.terminate()
                _let_go(pending)
            await close(merger, clean=clean and merged)


def _let_go(task: "asyncio.Task[None]") -> None:
    """Cancel `task` and never wait for it; its outcome is collected so it is not reported as lost."""
    task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())

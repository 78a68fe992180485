"""The database side of an audit: `run_history` and `runs` read in pages by run id, and the projection
rewritten from the log in one transaction.

asyncpg directly: paging a million rows and COPYing a million event ids is what it is fastest at, and
the rebuild must hold one connection (and one transaction) for its whole duration.
"""

import json
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import asyncpg

from service.audit.trail import RunTrail
from service.history import folds

PAGE_SIZE = 5_000
LOCK_TIMEOUT = "30s"

HISTORY_COLUMNS = ("run_id", *folds.HISTORY_COLUMNS)
REBUILT_COLUMNS = tuple(name for name in HISTORY_COLUMNS if name != "events")
"""What a rebuild copies from the trails; `events` is counted from the staged event ids instead."""
RUNS_COLUMNS = (
    "id", "batch_id", "status", "trigger", "requested_by", "started_at", "finished_at", "records_written",
    "message", "error_code", "cancel_requested_by", "resumed_from_run_id", "config_hash", "config",
    "records_rejected", "source_count", "target_count", "reconciled",
)


def _scope(column_started: str, batch_id: int | None, since: datetime | None, start: int) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if batch_id is not None:
        args.append(batch_id)
        clauses.append(f"batch_id = ${start + len(args)}::int")
    if since is not None:
        args.append(since)
        clauses.append(f"date_trunc('milliseconds', {column_started}) >= ${start + len(args)}::timestamptz")
    return "".join(f" AND {c}" for c in clauses), args


async def _keyset_pages(conn: asyncpg.Connection, table: str, key: str, columns: tuple[str, ...],
                        batch_id: int | None, since: datetime | None,
                        page_size: int) -> AsyncIterator[list[dict[str, Any]]]:
    """Rows of `table` in scope, ordered by `key`, one page at a time: memory stays flat on any log size."""
    where, args = _scope("started_at", batch_id, since, 1)
    sql = (f"SELECT {', '.join(columns)} FROM {table} WHERE {key} > $1{where} "
           f"ORDER BY {key} LIMIT {int(page_size)}")
    after = uuid.UUID(int=0)
    while True:
        rows = await conn.fetch(sql, after, *args)
        if not rows:
            return
        yield [dict(r) for r in rows]
        after = rows[-1][key]


async def history_pages(conn: asyncpg.Connection, batch_id: int | None, since: datetime | None,
                        page_size: int = PAGE_SIZE) -> AsyncIterator[list[dict[str, Any]]]:
    """`run_history` rows in scope, ordered by run id, one page at a time."""
    async for page in _keyset_pages(conn, "run_history", "run_id", HISTORY_COLUMNS, batch_id, since, page_size):
        yield page


async def runs_pages(conn: asyncpg.Connection, batch_id: int | None, since: datetime | None,
                     page_size: int = PAGE_SIZE) -> AsyncIterator[list[dict[str, Any]]]:
    """`runs` rows in scope, ordered by id, with the config snapshot decoded."""
    async for page in _keyset_pages(conn, "runs", "id", RUNS_COLUMNS, batch_id, since, page_size):
        for row in page:
            if isinstance(row["config"], str):
                row["config"] = json.loads(row["config"])
        yield page


async def batch_ids(conn: asyncpg.Connection) -> set[int]:
    """Batches that still exist: runs of a deleted batch are gone from `runs` by design (ON DELETE CASCADE)."""
    return {r["id"] for r in await conn.fetch("SELECT id FROM batches")}


async def begin_rebuild(conn: asyncpg.Connection) -> None:
    """Inside the caller's transaction: stop the projector writing (readers go on seeing the old
    history until commit), and stage the event ids the log holds."""
    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    await conn.execute("LOCK TABLE run_history, projected_events IN EXCLUSIVE MODE")
    await conn.execute("CREATE TEMP TABLE audit_staged_events (event_id uuid, run_id uuid) ON COMMIT DROP")


async def stage_events(conn: asyncpg.Connection, rows: list[tuple[uuid.UUID, uuid.UUID | None]]) -> None:
    if rows:
        await conn.copy_records_to_table("audit_staged_events", records=rows)


def _history_record(trail: RunTrail) -> tuple[Any, ...]:
    return (trail.run_id, *(trail.fields[name] for name in REBUILT_COLUMNS[1:]))


async def finish_rebuild(conn: asyncpg.Connection, trails: Iterable[RunTrail], *, batch_id: int | None,
                         group_id: str, topic: str, end_offsets: dict[int, int]) -> None:
    """Replace the projection (all of it, or one batch's) with the rebuilt runs; `events` counts distinct
    event ids as the projector does. A full rebuild also stores the projector's offsets at the end read,
    so it goes on from there instead of re-reading what was just rebuilt."""
    await conn.execute("CREATE TEMP TABLE audit_rebuilt (LIKE run_history INCLUDING DEFAULTS) ON COMMIT DROP")
    await conn.copy_records_to_table("audit_rebuilt", records=(_history_record(t) for t in trails),
                                     columns=REBUILT_COLUMNS)
    if batch_id is None:
        await conn.execute("DELETE FROM run_history")
        await conn.execute("DELETE FROM projected_events")
    else:
        await conn.execute(
            "DELETE FROM projected_events WHERE run_id IN (SELECT run_id FROM run_history WHERE batch_id = $1) "
            "OR run_id IN (SELECT run_id FROM audit_rebuilt)", batch_id)
        await conn.execute("DELETE FROM run_history WHERE batch_id = $1", batch_id)
    await conn.execute(
        "INSERT INTO projected_events (event_id, run_id) SELECT DISTINCT ON (event_id) event_id, run_id "
        "FROM audit_staged_events ON CONFLICT DO NOTHING")
    columns = ", ".join(REBUILT_COLUMNS)
    await conn.execute(
        f"INSERT INTO run_history ({columns}, events) SELECT {', '.join('r.' + c for c in REBUILT_COLUMNS)}, "
        "coalesce(c.n, 0) FROM audit_rebuilt r LEFT JOIN (SELECT run_id, count(DISTINCT event_id) AS n "
        "FROM audit_staged_events GROUP BY run_id) c ON c.run_id = r.run_id")
    if batch_id is None and any(o > 0 for o in end_offsets.values()):
        await conn.executemany(
            "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            [(group_id, topic, p, o) for p, o in end_offsets.items() if o > 0])

"""PostgreSQL overwrite of a small table without a staging table: the run's first chunk is held in memory
(up to HOLD_BYTES of binary COPY or HOLD_ROWS decoded rows) and, when it turns out to be the last, published
at `finish` in one transaction:
`LOCK … SHARE ROW EXCLUSIVE`, `DELETE`, `COPY`, the finished checkpoint. No DDL, one transaction.

Readers: `SHARE ROW EXCLUSIVE` blocks other writers but not readers, and `DELETE` is MVCC: a reader sees the
old rows until the commit and the new ones after it, never an empty table and never a wait. `TRUNCATE` was
measured and rejected: it needs `ACCESS EXCLUSIVE`, so every reader blocks behind the swap, and a reader
whose snapshot is older than the commit (REPEATABLE READ) then sees the table empty (docs/performance.md).

Nothing held is durable: no checkpoint is written until `finish`, so a run that dies before it starts
again from its first chunk. A second chunk sends the held one to the staging table after all (the usual
path); a bigger first chunk goes there at once, its bytes read so far put back in front of the rest.
"""

import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import asyncpg

from service.connectors.base import Checkpoint, Chunk
from service.connectors.sql.target import CHECKPOINTS
from service.sync.errors import CheckpointTaken
from service.sync.transforms import quote_ident

HOLD_BYTES = 1 << 20
"""The most of a first chunk's binary COPY held in memory (a 100-row chunk of 9 columns is about 15 KB)."""
HOLD_ROWS = 5_000
"""The most decoded rows held: holding a first chunk keeps it until the next one, so a big one would add a
chunk to the run's memory."""

_HEADER = 11  # PGCOPY\n\377\r\n\0


def copy_rows(data: bytes) -> int:
    """Rows in one binary COPY (`COPY … TO STDOUT (FORMAT binary)`): header, tuples, the -1 trailer."""
    flags_and_extension = struct.unpack_from("!ii", data, _HEADER)
    pos, rows = _HEADER + 8 + flags_and_extension[1], 0
    while True:
        (fields,) = struct.unpack_from("!h", data, pos)
        pos += 2
        if fields == -1:
            return rows
        for _ in range(fields):
            (length,) = struct.unpack_from("!i", data, pos)
            pos += 4 + max(length, 0)
        rows += 1


@dataclass
class Held:
    """A first chunk kept in memory: its decoded rows, or the bytes of its binary COPY."""

    chunk: Chunk
    data: bytes | None
    rows: int


async def _chain(parts: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    async for part in rest:
        yield part


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def hold(chunk: Chunk) -> Held | Chunk:
    """Hold `chunk` if it is small; otherwise the chunk to stage (same rows, the stream read so far put back)."""
    if chunk.stream is None:
        rows = chunk.rows or []
        return Held(chunk, None, len(rows)) if len(rows) <= HOLD_ROWS else chunk
    parts: list[bytes] = []
    size = 0
    async for part in chunk.stream:
        parts.append(part)
        size += len(part)
        if size > HOLD_BYTES:
            return replace(chunk, stream=_chain(parts, chunk.stream))
    data = b"".join(parts)
    return Held(replace(chunk, stream=None), data, copy_rows(data) if data else 0)


def released(held: Held) -> Chunk:
    """The held chunk as the staging path takes it."""
    if held.data is None:
        return held.chunk
    return replace(held.chunk, stream=_once(held.data))


async def publish(conn: asyncpg.Connection, table: str, key: str, held: Held) -> None:
    """Replace the table's rows with the held ones, inside the caller's transaction (which then saves the
    finished checkpoint). CheckpointTaken when another execution of the run wrote a checkpoint first (the
    table lock orders two publishers; the second sees the first's checkpoint): nothing is published twice."""
    await conn.execute(f"LOCK TABLE {quote_ident(table)} IN SHARE ROW EXCLUSIVE MODE")
    if await conn.fetchval(f"SELECT chunk FROM {CHECKPOINTS} WHERE checkpoint_key = $1::uuid FOR UPDATE",
                           key) is not None:
        raise CheckpointTaken(detail="chunk 1")
    await conn.execute(f"DELETE FROM {quote_ident(table)}")
    schema, _, name = table.rpartition(".")
    chunk = held.chunk
    if held.data is not None:
        await conn.copy_to_table(name, schema_name=schema or None, source=_once(held.data), columns=chunk.columns,
                                 format="binary")
    else:
        await conn.copy_records_to_table(name, schema_name=schema or None, records=chunk.rows or [],
                                         columns=chunk.columns)


def checkpoint_after(previous: Checkpoint, held: Held) -> Checkpoint:
    return previous.after(held.chunk, held.rows, held.rows)

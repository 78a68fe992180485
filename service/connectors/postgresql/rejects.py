"""Rows PostgreSQL refuses inside a COPY chunk, isolated by halving (a run with an `errorLimit`).

A chunk is first COPYed whole inside a savepoint, so a good chunk costs one COPY as before. Only when the
database refuses a row (SQLSTATE class 22, a bad value or one too long; class 23, a constraint) is that
chunk split: each half is tried in its own savepoint, a refused half split again, until the refused rows
stand alone; k bad rows cost about 2·k·log2(n) COPYs of that chunk. Everything happens in the caller's
transaction, so the good rows and the chunk's checkpoint still commit together.

A chunk arrives as decoded rows, as CSV text or as binary COPY; the two streams are cut into records
without decoding them (CSV by its quoting rules, binary by its length-prefixed framing).
"""

import csv
import io
import json
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import asyncpg.exceptions as pgerr

from schemas.messages import located, row_refused
from service.connectors.base import Chunk, RejectedRow
from service.sync.rejects import halve, row_of

REFUSALS = (pgerr.DataError, pgerr.IntegrityConstraintViolationError)
"""What a single row can cause: a value the column cannot take, or a constraint it breaks."""

_BINARY_TRAILER = b"\xff\xff"
_PROBE = "_batchsync_reject_probe"

Copy = Callable[[Sequence[Any]], Awaitable[None]]
"""COPYs some of the chunk's records (and merges them, for upsert) into the target, in a savepoint."""


async def isolate(conn: asyncpg.Connection, records: Sequence[Any], copy: Copy, *,
                  refused_whole: bool = False) -> list[tuple[int, str]]:
    """Copy `records`, setting aside those the database refuses: (index, reason) of each refused one.
    `refused_whole`: the caller already saw the whole chunk refused, so halving starts at once."""

    async def attempt(lo: int, hi: int) -> str | None:
        try:
            async with conn.transaction():
                await copy(records[lo:hi])
        except REFUSALS as exc:
            return row_refused(refusal_reason(exc))
        return None

    return await halve(len(records), attempt, refused_whole=refused_whole)


def refusal_reason(exc: pgerr.PostgresError) -> str:
    """The database's own words for a refused row, with the column or constraint when it names one."""
    where = getattr(exc, "column_name", None) or getattr(exc, "constraint_name", None)
    message = str(getattr(exc, "message", None) or exc).splitlines()[0]
    return located(message, where) if where and where not in message else message


def csv_records(data: bytes) -> list[tuple[bytes, list[str]]]:
    """CSV text (RFC 4180, UTF-8) cut into records: each one's bytes, unchanged, and its fields."""
    lines = io.StringIO(data.decode("utf-8"), newline="")
    consumed: list[str] = []

    def feed() -> Any:
        for line in lines:
            consumed.append(line)
            yield line

    out = []
    for fields in csv.reader(feed()):
        out.append(("".join(consumed).encode("utf-8"), fields))
        consumed.clear()
    return out


def binary_records(data: bytes) -> tuple[bytes, list[bytes]]:
    """Binary COPY data cut into its header and one byte string per tuple (the trailer dropped)."""
    extension = struct.unpack_from("!i", data, 15)[0]
    start = 19 + extension
    header, tuples, at = data[:start], [], start
    while at < len(data):
        (fields,) = struct.unpack_from("!h", data, at)
        if fields == -1:
            break
        end = at + 2
        for _ in range(fields):
            (length,) = struct.unpack_from("!i", data, end)
            end += 4 + max(length, 0)
        tuples.append(data[at:end])
        at = end
    return header, tuples


def binary_fields(record: bytes) -> list[bytes | None]:
    """A binary tuple's raw fields (for a row the probe could not decode)."""
    (fields,) = struct.unpack_from("!h", record, 0)
    out: list[bytes | None] = []
    at = 2
    for _ in range(fields):
        (length,) = struct.unpack_from("!i", record, at)
        at += 4
        out.append(None if length < 0 else record[at:at + length])
        at += max(length, 0)
    return out


async def _stream(data: bytes) -> Any:
    yield data


class TolerantCopy:
    """Writes one chunk into `dest` (then runs `merge`, for upsert), rows the database refuses set aside on
    `chunk.rejected`; returns (rows read, rows written)."""

    def __init__(self, conn: asyncpg.Connection, dest: str, schema: str | None, fmt: str,
                 merge: str | None, stage: str | None) -> None:
        self.conn, self.dest, self.schema, self.fmt = conn, dest, schema, fmt
        self.merge, self.stage = merge, stage

    async def _after(self) -> None:
        if self.merge:
            await self.conn.execute(self.merge)
            await self.conn.execute(f"DELETE FROM {self.stage}")  # the next piece merges only its own rows

    async def write(self, chunk: Chunk) -> tuple[int, int]:
        if chunk.stream is None:
            return await self._rows(chunk)
        data = b"".join([piece async for piece in chunk.stream])
        if self.fmt == "csv":
            await self.conn.execute("SET LOCAL TimeZone = 'UTC'")  # a time without an offset is UTC, as untolerant
        try:  # the whole chunk first, as it came: a good chunk is not cut into records at all
            async with self.conn.transaction():
                status = await self.conn.copy_to_table(
                    self.dest, schema_name=self.schema, columns=chunk.columns, format=self.fmt,
                    force_null=chunk.columns if self.fmt == "csv" else None, source=_stream(data))
                await self._after()
            copied = int(status.rsplit(" ", 1)[-1])
            return copied, copied
        except REFUSALS:
            pass
        if self.fmt == "csv":
            return await self._csv(chunk, data)
        return await self._binary(chunk, data)

    async def _rows(self, chunk: Chunk) -> tuple[int, int]:
        rows = chunk.rows or []

        async def copy(part: Sequence[Any]) -> None:
            await self.conn.copy_records_to_table(self.dest, schema_name=self.schema, records=part,
                                                  columns=chunk.columns)
            await self._after()

        refused = await isolate(self.conn, rows, copy)
        chunk.rejected.extend(RejectedRow(row_of(chunk.columns, rows[i]), reason) for i, reason in refused)
        return len(rows), len(rows) - len(refused)

    async def _csv(self, chunk: Chunk, data: bytes) -> tuple[int, int]:
        records = csv_records(data)

        async def copy(part: Sequence[Any]) -> None:
            await self.conn.copy_to_table(self.dest, schema_name=self.schema, columns=chunk.columns, format="csv",
                                          force_null=chunk.columns, source=_stream(b"".join(r[0] for r in part)))
            await self._after()

        refused = await isolate(self.conn, records, copy, refused_whole=True)
        for i, reason in refused:
            values = [v if v != "" else None for v in records[i][1]]
            chunk.rejected.append(RejectedRow(row_of(chunk.columns, values), reason))
        return len(records), len(records) - len(refused)

    async def _binary(self, chunk: Chunk, data: bytes) -> tuple[int, int]:
        header, records = binary_records(data)

        async def copy(part: Sequence[Any]) -> None:
            body = header + b"".join(part) + _BINARY_TRAILER
            await self.conn.copy_to_table(self.dest, schema_name=self.schema, columns=chunk.columns, format="binary",
                                          source=_stream(body))
            await self._after()

        refused = await isolate(self.conn, records, copy, refused_whole=True)
        for i, reason in refused:
            row = await self._decoded(chunk.columns, header + records[i] + _BINARY_TRAILER)
            if row is None:
                fields = binary_fields(records[i])
                row = row_of(chunk.columns, [None if f is None else "\\x" + f.hex() for f in fields])
            chunk.rejected.append(RejectedRow(row, reason))
        return len(records), len(records) - len(refused)

    async def _decoded(self, columns: list[str], body: bytes) -> dict[str, Any] | None:
        """A refused binary row as JSON, read back through a constraint-free copy of the target's columns in a
        savepoint that is rolled back; None when even that refuses it (a domain type, say)."""
        table = f"{self.schema}.{self.dest}" if self.schema else self.dest
        cols = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        quoted = ".".join('"' + p.replace('"', '""') + '"' for p in table.split("."))
        try:
            async with self.conn.transaction():
                await self.conn.execute(f"CREATE TEMP TABLE {_PROBE} AS SELECT {cols} FROM {quoted} WITH NO DATA")
                await self.conn.copy_to_table(_PROBE, columns=columns, format="binary", source=_stream(body))
                text = await self.conn.fetchval(f"SELECT row_to_json(p)::text FROM {_PROBE} p")
                raise _Decoded(text)
        except _Decoded as decoded:
            loaded: dict[str, Any] = json.loads(decoded.text)
            return loaded
        except (pgerr.PostgresError, ValueError):
            return None


class _Decoded(Exception):
    """Leaves the probe's savepoint by rollback, carrying what it read."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

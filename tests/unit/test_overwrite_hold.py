"""What the small-overwrite path holds in memory (service/connectors/postgresql/overwrite.py): small first chunks,
never a big one (its stream handed on whole, in order), and the row count of a binary COPY."""

import struct

import pytest

from service.connectors.base import Chunk
from service.connectors.postgresql import overwrite
from service.connectors.postgresql.overwrite import Held, copy_rows, hold, released


def binary_copy(rows: list[tuple[bytes | None, ...]]) -> bytes:
    """A `COPY … (FORMAT binary)` body: signature, flags, extension length, tuples, the -1 trailer."""
    out = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
    for row in rows:
        out += struct.pack("!h", len(row))
        for value in row:
            out += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return out + struct.pack("!h", -1)


async def stream_of(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_copy_rows_counts_tuples_nulls_included() -> None:
    assert copy_rows(binary_copy([])) == 0
    assert copy_rows(binary_copy([(b"\x00\x00\x00\x01", None, b"abc")] * 7)) == 7


async def test_a_small_stream_is_held_and_released_unchanged() -> None:
    data = binary_copy([(b"x" * 10,)] * 20)
    held = await hold(Chunk(number=1, position={}, columns=["a"], stream=stream_of(data, 7)))
    assert isinstance(held, Held) and held.rows == 20 and held.data == data
    assert b"".join([part async for part in released(held).stream]) == data


async def test_a_big_stream_is_handed_on_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overwrite, "HOLD_BYTES", 50)
    data = binary_copy([(b"y" * 30,)] * 10)
    kept = await hold(Chunk(number=1, position={}, columns=["a"], stream=stream_of(data, 16)))
    assert isinstance(kept, Chunk)
    assert b"".join([part async for part in kept.stream]) == data


async def test_decoded_rows_are_held_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overwrite, "HOLD_ROWS", 3)
    assert isinstance(await hold(Chunk(number=1, position={}, columns=["a"], rows=[(1,), (2,), (3,)])), Held)
    big = Chunk(number=1, position={}, columns=["a"], rows=[(1,), (2,), (3,), (4,)])
    assert await hold(big) is big

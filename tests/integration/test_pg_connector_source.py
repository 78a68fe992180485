"""The PostgreSQL source on its own: keyset chunk boundaries, the decoded keyset path other targets
will use, estimates, and positions that resume exactly after the last row handed out."""

from schemas.api import SourceSpec
from service.connectors.base import TargetTypes
from service.connectors.postgresql.source import PostgresSource
from service.connectors.postgresql.types import TYPES
from service.sync.model import Endpoint
from service.sync.transforms import plan_columns
from tests.integration.test_engine_sync import pg, source_table


async def _read(source: PostgresSource, position: dict, *, raw: bool, size: int) -> list:
    columns = await source.describe()
    plan = plan_columns([c.name for c in columns], None)
    types = TargetTypes({c.name: c.sql_type for c in columns}, TYPES)
    return [c async for c in source.chunks(plan, types, position, size=size, raw=raw)]


async def test_keyset_rows_resume_after_the_last_key(source_dsn: str) -> None:
    src = await source_table(source_dsn, 25)
    async with pg(source_dsn) as conn:
        await conn.execute(f"DELETE FROM {src} WHERE id IN (3, 4, 11)")
    endpoint = Endpoint("postgresql", url=source_dsn)
    async with PostgresSource(endpoint, SourceSpec(table=src), 5) as source:
        await source.describe()
        start = await source.start(None)
        chunks = await _read(source, start, raw=False, size=10)
        assert [[r[0] for r in c.rows] for c in chunks] == [
            [1, 2, 5, 6, 7, 8, 9, 10, 12, 13],
            [14, 15, 16, 17, 18, 19, 20, 21, 22, 23],
            [24, 25],
        ]
        assert [c.position["after"] for c in chunks] == ["13", "23", "25"]
        again = await _read(source, chunks[0].position, raw=False, size=10)
        assert [r[0] for r in again[0].rows][:2] == [14, 15]
        assert await source.estimate(start) == 22


async def test_raw_chunks_carry_binary_copy_bytes(source_dsn: str) -> None:
    src = await source_table(source_dsn, 30)
    async with PostgresSource(Endpoint("postgresql", url=source_dsn), SourceSpec(table=src), 5) as source:
        await source.describe()
        chunks = []
        async for chunk in source.chunks(
            plan_columns(["id"], None), TargetTypes({"id": "bigint"}, TYPES), await source.start(None), size=20,
            raw=True,
        ):
            data = b"".join([part async for part in chunk.stream])
            chunks.append((chunk.position["after"], data))
    assert [after for after, _ in chunks] == ["20", "30"]
    first = chunks[0][1]
    assert first.startswith(b"PGCOPY\n\xff\r\n\x00") and first.endswith(b"\xff\xff")
    # header 19 bytes + 20 tuples of (int16 count + int32 length + int64 value) + int16 trailer
    assert len(first) == 19 + 20 * (2 + 4 + 8) + 2

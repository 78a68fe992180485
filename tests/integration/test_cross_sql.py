"""Across SQL systems through the whole HTTP stack (API → broker → worker → engine → connectors):
PostgreSQL → MariaDB, MariaDB → PostgreSQL and SQLite → PostgreSQL, 3,000 rows with every type of the
mapping table (NULLs, decimals with scale, time zones, Chinese and very long text, JSON, binary),
checked row by row, by count and by checksum."""

import hashlib
from pathlib import Path

import pytest

from tests.contract.cases.mysql import MySQLCase
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.cases.sqlite import SQLiteCase
from tests.contract.harness import FIELDS, Context, make_rows, normalized
from tests.support.builders import unique
from tests.support.stack import SOLO, create_batch, running_stack, stack_settings

ROWS = 3000


@pytest.fixture(scope="module")
async def stack(state_dsn, broker):
    async with running_stack(stack_settings(state_dsn, broker.bootstrap, **SOLO)) as running:
        yield running


def cases(source_dsn: str, target_dsn: str, tmp: Path) -> dict[str, object]:
    def ctx(dsn: str) -> Context:
        return Context(pg_dsn=dsn, tmp_dir=tmp, kafka_bootstrap="")

    return {"pg_source": PostgresCase(ctx(source_dsn)), "pg_target": PostgresCase(ctx(target_dsn)),
            "mysql": MySQLCase(ctx(source_dsn)), "sqlite": SQLiteCase(ctx(source_dsn))}


async def connection(stack, case) -> int:
    endpoint = case.endpoint
    response = await stack.client.post("/integration/connection", headers=stack.headers(),
                                       json={"name": unique(endpoint.type), "type": endpoint.type,
                                             "url": endpoint.url})
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["id"])


def checksum(rows: list[tuple]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()


@pytest.mark.parametrize(("source_name", "target_name"), [
    ("pg_source", "mysql"), ("mysql", "pg_target"), ("sqlite", "pg_target"),
])
async def test_every_type_crosses_systems_through_http(stack, source_dsn, target_dsn, tmp_path, source_name,
                                                       target_name) -> None:
    known = cases(source_dsn, target_dsn, tmp_path)
    source, target = known[source_name], known[target_name]
    rows = make_rows(ROWS)
    table = unique("cross")
    await source.seed(table, rows)
    await target.create(table)
    batch_id = await create_batch(stack, unique("cross"), await connection(stack, source),
                                  await connection(stack, target), {"table": table},
                                  {"table": table, "mode": "upsert", "keyColumns": ["id"]}, chunkSize=1000)

    response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())

    assert response.status_code == 200, response.text
    assert response.json()["data"]["recordsSynced"] == ROWS
    want = normalized(rows, FIELDS)
    got = normalized(await target.read(target.endpoint, table), FIELDS)
    assert len(got) == ROWS
    for expected, actual in zip(want, got, strict=True):
        assert actual == expected, f"row {expected[0]} differs"
    assert checksum(got) == checksum(want)

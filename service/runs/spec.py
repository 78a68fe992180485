"""Turn a run row (its config snapshot) and its connections into the engine's RunSpec."""

from typing import Any

import asyncpg

from schemas.api import ErrorLimitSpec, MappingEntry, SourceSpec, TargetSpec
from schemas.messages import BATCH_NOT_FOUND, connection_missing
from service.catalog.connections import endpoint_of
from service.db import driver
from service.db.models import Connection, Run
from service.security.policy import AccessPolicy
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint, RunSpec

_SPEC_ROWS = f"""
SELECT b.high_water_mark AS batch_high_water_mark, {driver.columns(Connection, "c")}
  FROM batches b LEFT JOIN connections c ON c.id = ANY($2::integer[])
 WHERE b.id = $1"""


async def _batch_and_connections(
    conn: asyncpg.Connection, batch_id: int, *connection_ids: int
) -> tuple[bool, Any, dict[int, Connection]]:
    """Whether the batch exists, its high-water mark and the run's connections, in one statement: the claim's
    transaction is on the path of every sync, and each statement there is a round trip (docs/performance.md)."""
    rows = await conn.fetch(_SPEC_ROWS, batch_id, sorted(set(connection_ids)))
    if not rows:
        return False, None, {}
    connections = {row["id"]: driver.detached(Connection, row) for row in rows if row["id"] is not None}
    return True, rows[0]["batch_high_water_mark"], connections


def _endpoint(connections: dict[int, Connection], connection_id: int, policy: AccessPolicy) -> Endpoint:
    connection = connections.get(connection_id)
    if connection is None:
        raise ConfigInvalid(connection_missing(connection_id))
    return endpoint_of(connection, policy)


async def load_spec(conn: asyncpg.Connection, run: Run, default_chunk_size: int, policy: AccessPolicy) -> RunSpec:
    """The engine's spec of `run`, read in the driver transaction `conn` (service/db/driver.py)."""
    config = run.config or {}
    found, high_water_mark, connections = await _batch_and_connections(
        conn, run.batch_id, config.get("sourceConnectionId", 0), config.get("targetConnectionId", 0))
    if not found:
        raise ConfigInvalid(BATCH_NOT_FOUND)
    try:
        source = SourceSpec.model_validate(config["source"])
        target = TargetSpec.model_validate(config["target"])
        mapping = [MappingEntry.model_validate(entry) for entry in config.get("mapping") or []]
        error_limit = ErrorLimitSpec.model_validate(config["errorLimit"]) if config.get("errorLimit") else None
    except (KeyError, ValueError) as error:
        raise ConfigInvalid(detail=str(error)) from error
    return RunSpec(
        run_id=run.id,
        checkpoint_key=run.checkpoint_key,
        batch_id=run.batch_id,
        source_endpoint=_endpoint(connections, config["sourceConnectionId"], policy),
        source=source,
        target_endpoint=_endpoint(connections, config["targetConnectionId"], policy),
        target=target,
        mapping=mapping or None,
        chunk_size=config.get("chunkSize") or default_chunk_size,
        high_water_mark=high_water_mark,
        error_limit=error_limit,
    )

"""Turn a run row (its config snapshot) and its connections into the engine's RunSpec."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import ErrorLimitSpec, MappingEntry, SourceSpec, TargetSpec
from schemas.messages import BATCH_NOT_FOUND, connection_missing
from service.catalog.connections import endpoint_of
from service.db.models import Batch, Connection, Run
from service.security.policy import AccessPolicy
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint, RunSpec


async def _batch_and_connections(
    session: AsyncSession, batch_id: int, *connection_ids: int
) -> tuple[Batch | None, dict[int, Connection]]:
    """The batch and the run's connections in one statement: the claim's transaction is on the path of every
    sync, and each statement there is a round trip (docs/performance.md)."""
    rows = (await session.execute(
        select(Batch, Connection).outerjoin(Connection, Connection.id.in_(set(connection_ids)))
        .where(Batch.id == batch_id)
    )).all()
    if not rows:
        return None, {}
    return rows[0][0], {connection.id: connection for _, connection in rows if connection is not None}


def _endpoint(connections: dict[int, Connection], connection_id: int, policy: AccessPolicy) -> Endpoint:
    connection = connections.get(connection_id)
    if connection is None:
        raise ConfigInvalid(connection_missing(connection_id))
    return endpoint_of(connection, policy)


async def load_spec(session: AsyncSession, run: Run, default_chunk_size: int, policy: AccessPolicy) -> RunSpec:
    config = run.config or {}
    batch, connections = await _batch_and_connections(
        session, run.batch_id, config.get("sourceConnectionId", 0), config.get("targetConnectionId", 0))
    if batch is None:
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
        high_water_mark=batch.high_water_mark,
        error_limit=error_limit,
    )

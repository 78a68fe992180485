"""Turn a run row (its config snapshot) and its connections into the engine's RunSpec."""

from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import ErrorLimitSpec, MappingEntry, SourceSpec, TargetSpec
from schemas.messages import BATCH_NOT_FOUND, connection_missing
from service.catalog.connections import endpoint_of
from service.db.models import Batch, Connection, Run
from service.security.policy import AccessPolicy
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint, RunSpec


async def _endpoint(session: AsyncSession, connection_id: int, policy: AccessPolicy) -> Endpoint:
    connection = await session.get(Connection, connection_id)
    if connection is None:
        raise ConfigInvalid(connection_missing(connection_id))
    return endpoint_of(connection, policy)


async def load_spec(session: AsyncSession, run: Run, default_chunk_size: int, policy: AccessPolicy) -> RunSpec:
    config = run.config or {}
    batch = await session.get(Batch, run.batch_id)
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
        source_endpoint=await _endpoint(session, config["sourceConnectionId"], policy),
        source=source,
        target_endpoint=await _endpoint(session, config["targetConnectionId"], policy),
        target=target,
        mapping=mapping or None,
        chunk_size=config.get("chunkSize") or default_chunk_size,
        high_water_mark=batch.high_water_mark,
        error_limit=error_limit,
    )

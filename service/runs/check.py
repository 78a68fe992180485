"""`POST /integration/batch/{id}/check`: load the batch and open its two connections as a run would, then
hand them to the dry run (`service.sync.check`), which reads and never writes.

The state-store session is closed before any connection is opened, so a slow system never holds a
database connection of the API. The preview starts where the next run would (the batch's high-water
mark), so an incremental batch previews the rows its next run reads.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import BatchCheck, CheckColumn, CheckProblem, MappingEntry, SourceSpec, SplitSpec, TargetSpec
from schemas.messages import BATCH_NOT_FOUND, connection_missing
from service.catalog.connections import endpoint_of
from service.catalog.errors import NotFound
from service.connectors.base import Connectors
from service.db.models import Batch, Connection
from service.security.policy import AccessPolicy
from service.slicing.planner import plan_slices
from service.sync.check import CheckReport, CheckSpec, Problem
from service.sync.check import check as dry_run
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint


async def check_batch(session: AsyncSession, batch_id: int, policy: AccessPolicy, connectors: Connectors,
                      connect_timeout: float) -> BatchCheck:
    """The dry run of a stored batch; NotFound (404) when there is no such batch."""
    batch = await session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(BATCH_NOT_FOUND)
    problems: list[Problem] = []
    source_endpoint = await _endpoint(session, batch.source_connection_id, policy, "sourceConnectionId", problems)
    target_endpoint = await _endpoint(session, batch.target_connection_id, policy, "targetConnectionId", problems)
    spec_parts = (SourceSpec.model_validate(batch.source), TargetSpec.model_validate(batch.target),
                  [MappingEntry.model_validate(m) for m in batch.mapping or []] or None, batch.high_water_mark)
    split = SplitSpec.model_validate(batch.split) if batch.split else None
    await session.close()
    if source_endpoint is None or target_endpoint is None:
        return to_wire(CheckReport(problems=problems))
    source, target, mapping, mark = spec_parts
    planner = None if split is None else (lambda opened: plan_slices(opened, split))
    spec = CheckSpec(source_endpoint, source, target_endpoint, target, mapping, mark, planner)
    return to_wire(await dry_run(spec, connectors, connect_timeout))


async def _endpoint(session: AsyncSession, connection_id: int, policy: AccessPolicy, where: str,
                    problems: list[Problem]) -> Endpoint | None:
    row = await session.get(Connection, connection_id)
    if row is None:
        problems.append(Problem(where, connection_missing(connection_id)))
        return None
    try:
        return endpoint_of(row, policy)
    except ConfigInvalid as error:
        problems.append(Problem(where, error.reason))
        return None


def to_wire(report: CheckReport) -> BatchCheck:
    return BatchCheck(
        ok=report.ok,
        problems=[CheckProblem(field=p.field, message=p.message) for p in report.problems],
        notes=[CheckProblem(field=p.field, message=p.message) for p in report.notes],
        columns=[CheckColumn(name=c.name, source=c.source, kind=c.kind, target_type=c.target_type)
                 for c in report.columns],
        preview=report.preview,
        slices=None if report.slices is None else [where.as_json() for where in report.slices],
    )

"""The retry policy (docs/spec.md §9): a run that failed on a transient error is resumed from its checkpoint
after a back-off, up to `maxAttempts` times; a terminal failure (auth, a missing table, a refused address, a
bad configuration) is never retried, since it would fail the same way.

Which failures are transient is what the run recorded: its `errorCode` for timeouts, refused connections and
an unreachable broker, and for the codes that mix both kinds (`SOURCE_ERROR`, `TARGET_ERROR`) the reason of the
`Transient` errors of service/sync/errors.py, which is the start of the run's message. Each attempt has its own
`requestId`, `retry:<batchId>:<failed runId>`, so several schedulers resume a failed run once.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import RetryPolicySpec
from schemas.events import BatchSyncRequested, BatchSyncRetryScheduled, ErrorCode, Trigger
from schemas.status import BatchStatus, RunStatus
from schemas.topics import Topics
from service.db.models import Batch, Run
from service.runs.lifecycle import active_run, latest_run, lease_from_now, new_run
from service.runs.outbox import add_event
from service.runs.requests import PENDING_GRACE_SECONDS
from service.runs.snapshot import run_id_for
from service.scheduling.schedules import PRODUCER
from service.sync.errors import TransientSourceError, TransientTargetError

log = logging.getLogger(__name__)

REQUESTED_BY = "retry-policy"
TRANSIENT_CODES = frozenset({
    ErrorCode.SOURCE_TIMEOUT, ErrorCode.SOURCE_REFUSED, ErrorCode.TARGET_TIMEOUT, ErrorCode.TARGET_REFUSED,
    ErrorCode.BROKER_UNAVAILABLE,
})
"""Codes that only transient errors carry: the system was slow, down or unreachable, not wrong."""
TRANSIENT_REASONS = (TransientSourceError.reason, TransientTargetError.reason)
"""Reasons that mark the transient errors among SOURCE_ERROR and TARGET_ERROR (a dropped connection)."""


def is_transient_failure(error_code: str | None, message: str | None) -> bool:
    if error_code is None:
        return False
    try:
        code = ErrorCode(error_code)
    except ValueError:
        return False
    if code in TRANSIENT_CODES:
        return True
    return code in (ErrorCode.SOURCE_ERROR, ErrorCode.TARGET_ERROR) and (message or "").startswith(TRANSIENT_REASONS)


def backoff(policy: RetryPolicySpec, attempt: int) -> timedelta:
    """The wait before attempt `attempt` (1-based): `backoffSeconds`, doubled for each attempt before it."""
    return timedelta(seconds=policy.backoff_seconds * 2 ** (attempt - 1))


def retry_request_id(batch_id: int, failed_run_id: object) -> str:
    return f"retry:{batch_id}:{failed_run_id}"


@dataclass(frozen=True)
class Retry:
    batch_id: int
    failed_run_id: object
    retry_run_id: object
    attempt: int


async def attempts_so_far(session: AsyncSession, failed: Run, limit: int) -> int:
    """How many policy retries led to `failed`: its chain of `resumedFromRunId` through runs the policy asked
    for (a retry by hand starts the count again)."""
    count, run = 0, failed
    while count <= limit and run.trigger == Trigger.RETRY.value and run.requested_by == REQUESTED_BY:
        count += 1
        if run.resumed_from_run_id is None:
            break
        previous = await session.get(Run, run.resumed_from_run_id)
        if previous is None:
            break
        run = previous
    return count


def policy_of(batch: Batch) -> RetryPolicySpec | None:
    if not batch.retry_policy:
        return None
    try:
        policy = RetryPolicySpec.model_validate(batch.retry_policy)
    except ValidationError:
        return None
    return policy if policy.max_attempts > 0 else None


async def retry_due(session: AsyncSession, now: datetime, topics: Topics, limit: int = 100) -> list[Retry]:
    """Resume every failed run whose back-off has passed and whose policy allows another attempt (caller
    commits). The batch rows are locked, SKIP LOCKED, like the schedules'."""
    candidates = (await session.scalars(
        select(Batch).where(Batch.retry_policy.is_not(None), Batch.status == BatchStatus.FAILED.value)
        .order_by(Batch.id).limit(limit).with_for_update(skip_locked=True)
    )).all()
    retries: list[Retry] = []
    for batch in candidates:
        policy = policy_of(batch)
        if policy is None:
            continue
        retry = await _retry(session, batch, policy, now, topics)
        if retry is not None:
            retries.append(retry)
    return retries


async def _retry(session: AsyncSession, batch: Batch, policy: RetryPolicySpec, now: datetime,
                 topics: Topics) -> Retry | None:
    failed = await latest_run(session, batch.id)
    if (failed is None or failed.status != RunStatus.FAILED or failed.finished_at is None
            or not is_transient_failure(failed.error_code, failed.message)):
        return None
    attempt = await attempts_so_far(session, failed, policy.max_attempts) + 1
    if attempt > policy.max_attempts or failed.finished_at + backoff(policy, attempt) > now:
        return None
    request_id = retry_request_id(batch.id, failed.id)
    retry_run_id = run_id_for(request_id)
    if await active_run(session, batch.id) is not None or await session.get(Run, retry_run_id) is not None:
        return None
    session.add(new_run(
        batch, request_id=request_id, correlation_id=request_id, reply_to=None, trigger=Trigger.RETRY.value,
        requested_by=REQUESTED_BY, owner=None, lease_until=lease_from_now(PENDING_GRACE_SECONDS),
        resumed_from=failed,
    ))
    add_event(session, topics.requested, BatchSyncRequested(
        correlation_id=request_id, batch_id=batch.id, producer=PRODUCER, request_id=request_id,
        requested_by=REQUESTED_BY, trigger=Trigger.RETRY, reply_to=None, resume_run_id=failed.id,
    ))
    add_event(session, topics.events, BatchSyncRetryScheduled(
        correlation_id=request_id, batch_id=batch.id, run_id=failed.id, producer=PRODUCER,
        retry_run_id=retry_run_id, request_id=request_id, attempt=attempt, max_attempts=policy.max_attempts,
        failed_error_code=ErrorCode(failed.error_code) if failed.error_code else None,
    ))
    log.info("batch %s: run %s failed (%s), retrying as %s, attempt %d of %d", batch.id, failed.id,
             failed.error_code, retry_run_id, attempt, policy.max_attempts)
    return Retry(batch.id, failed.id, retry_run_id, attempt)

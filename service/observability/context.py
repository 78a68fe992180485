"""The ids bound to every log line about a run, in context variables: the run's task and every task it
starts see them (asyncio copies the context), and no other task does. Rendered by service/observability/logs.py."""

import contextlib
from collections.abc import Iterator
from typing import Any

from structlog.contextvars import bound_contextvars


@contextlib.contextmanager
def bound_to_run(run_id: object, batch_id: object, correlation_id: str | None) -> Iterator[None]:
    """Every line logged inside names the run: `runId`, `batchId` and `correlationId`."""
    ids: dict[str, Any] = {"runId": str(run_id), "batchId": batch_id}
    if correlation_id:
        ids["correlationId"] = correlation_id
    with bound_contextvars(**ids):
        yield

"""The ids bound to every log line about a run, in one context variable: the run's task and every task it
starts see them (asyncio copies the context), no other task does. Rendered by service/observability/logs.py."""

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

_fields: ContextVar[Mapping[str, Any]] = ContextVar("batchsync_log_fields", default=MappingProxyType({}))


def log_fields() -> Mapping[str, Any]:
    """What is bound here now (empty outside any run)."""
    return _fields.get()


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` to every line logged inside this block, in this task and the tasks it starts."""
    token = _fields.set({**_fields.get(), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def bound_to_run(run_id: object, batch_id: object, correlation_id: str | None) -> AbstractContextManager[None]:
    """Every line logged inside names the run: `runId`, `batchId` and `correlationId`."""
    ids: dict[str, Any] = {"runId": str(run_id), "batchId": batch_id}
    if correlation_id:
        ids["correlationId"] = correlation_id
    return bound(**ids)

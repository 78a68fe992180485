"""The statuses a run and a batch can be in, and the sets every reader of them needs.

They live in `schemas/` because they are part of the contract: the API returns them (runs, history,
batches, statistics) and a client polls a run until its status is terminal (docs/spec.md). The run's
state machine, which moves a run between them, is `service/runs/status.py`.
"""

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class BatchStatus(StrEnum):
    """A batch's status is its latest run's, from the moment a worker claims that run (so never
    PENDING), and NEVER_RUN before its first claim. A separate enum, not a sixth RunStatus, because no
    run is ever NEVER_RUN: one enum would let both columns hold a value that one of them cannot have."""

    NEVER_RUN = "NEVER_RUN"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @classmethod
    def of_run(cls, status: RunStatus) -> "BatchStatus":
        """What a batch shows while its latest run is in `status` (a claimed run is never PENDING)."""
        return cls(status.value)


ACTIVE: frozenset[RunStatus] = frozenset({RunStatus.PENDING, RunStatus.RUNNING})
"""A run that may still do work: at most one per batch, and its lease decides who runs it."""

TERMINAL: frozenset[RunStatus] = frozenset({RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED})
"""A run whose outcome is known: it never changes status again."""


def sql_list(statuses: frozenset[RunStatus]) -> str:
    """`'A','B'` in a stable order, for SQL that must spell the statuses as literals: a partial index's
    predicate, and the queries the planner must match against it (with parameters it could not)."""
    return ",".join(f"'{status.value}'" for status in sorted(statuses))

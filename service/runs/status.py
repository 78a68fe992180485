"""The run state machine: explicit transitions, nothing else moves a run.

The statuses and their sets (ACTIVE, TERMINAL) are the contract's, in schemas/status.py; this module
says which moves between them are legal.
"""

from schemas.events import ErrorCode
from schemas.status import RunStatus

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset({RunStatus.RUNNING, RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.SUCCESS: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    pass


def check_transition(current: str, new: RunStatus) -> None:
    if new not in TRANSITIONS[RunStatus(current)]:
        raise IllegalTransition(f"run cannot go from {current} to {new}")


def may_become(new: RunStatus) -> frozenset[RunStatus]:
    """The statuses a run may leave for `new`: the guard of a statement that moves runs in bulk."""
    return frozenset(status for status, targets in TRANSITIONS.items() if new in targets)


def status_for_error(error_code: str | None) -> RunStatus:
    if error_code is None:
        return RunStatus.SUCCESS
    return RunStatus.CANCELLED if error_code == ErrorCode.CANCELLED else RunStatus.FAILED

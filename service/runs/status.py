"""The run state machine: explicit transitions, nothing else moves a run."""

from schemas.api import RunStatus

ACTIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING})
TERMINAL = frozenset({RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED})

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


def status_for_error(error_code: str | None) -> RunStatus:
    if error_code is None:
        return RunStatus.SUCCESS
    return RunStatus.CANCELLED if error_code == "CANCELLED" else RunStatus.FAILED

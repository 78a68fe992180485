"""Which failures the retry policy resumes (service/scheduling/retries.py): what the run recorded, read against
the error taxonomy of service/sync/errors.py, and the back-off per attempt."""

from datetime import timedelta

import pytest

from schemas.api import RetryPolicySpec
from service.scheduling.retries import backoff, is_transient_failure
from service.sync.errors import (
    AccessDenied,
    AuthFailed,
    ConfigInvalid,
    ConnectRefused,
    ConnectTimeout,
    SourceFailed,
    SyncError,
    TableMissing,
    TargetFailed,
    TransientSourceError,
    TransientTargetError,
)


def recorded(error: SyncError) -> tuple[str, str]:
    """What the executor records for a run that failed with `error`: its code and its reason."""
    return error.code.value, error.reason


@pytest.mark.parametrize("error", [
    ConnectRefused("source"), ConnectRefused("target"), ConnectTimeout("source"), ConnectTimeout("target"),
    TransientSourceError(detail="server closed the connection"), TransientTargetError(),
])
def test_transient_failures_are_retried(error: SyncError) -> None:
    assert is_transient_failure(*recorded(error))


@pytest.mark.parametrize("error", [
    AuthFailed("source"), AuthFailed("target"), TableMissing("orders"), TableMissing("orders", "target"),
    AccessDenied(), ConfigInvalid(), SourceFailed(), TargetFailed(),
])
def test_terminal_failures_are_not(error: SyncError) -> None:
    assert not is_transient_failure(*recorded(error))


def test_unknown_or_missing_codes_are_not() -> None:
    assert not is_transient_failure(None, None)
    assert not is_transient_failure("SOMETHING_NEW", "x")
    assert not is_transient_failure("CANCELLED", "")
    assert is_transient_failure("BROKER_UNAVAILABLE", None)


def test_backoff_doubles_per_attempt() -> None:
    policy = RetryPolicySpec(max_attempts=3, backoff_seconds=60)
    assert [backoff(policy, n) for n in (1, 2, 3)] == [timedelta(seconds=60), timedelta(seconds=120),
                                                       timedelta(seconds=240)]
    assert RetryPolicySpec().max_attempts == 0 and RetryPolicySpec().backoff_seconds == 60

"""The retry helper: transient errors are retried with bounded back-off, terminal ones surface at once."""

import pytest

from service.sync.errors import SourceFailed, TransientTargetError
from service.sync.retry import RetryPolicy, retry_transient

FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002, budget=5)


async def test_transient_errors_are_retried_until_success() -> None:
    calls: list[int] = []

    async def flaky(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 2:
            raise TransientTargetError()
        return "ok"

    assert await retry_transient(flaky, FAST) == "ok"
    assert calls == [0, 1, 2]


async def test_attempts_are_bounded() -> None:
    calls: list[int] = []

    async def broken(attempt: int) -> None:
        calls.append(attempt)
        raise TransientTargetError()

    with pytest.raises(TransientTargetError):
        await retry_transient(broken, FAST)
    assert calls == [0, 1, 2]


async def test_terminal_errors_are_not_retried() -> None:
    calls: list[int] = []

    async def terminal(attempt: int) -> None:
        calls.append(attempt)
        raise SourceFailed()

    with pytest.raises(SourceFailed):
        await retry_transient(terminal, FAST)
    assert calls == [0]


def test_delay_is_jittered_and_capped() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=2)
    delays = [policy.delay(5) for _ in range(200)]
    assert all(0 <= d <= 2 for d in delays) and len(set(delays)) > 100


async def test_an_outage_is_retried_for_its_budget_however_many_attempts_that_takes() -> None:
    calls: list[int] = []

    async def down(attempt: int) -> None:
        calls.append(attempt)
        raise TransientTargetError()

    with pytest.raises(TransientTargetError):
        await retry_transient(down, RetryPolicy(base_delay=0.001, max_delay=0.01, budget=0.3))
    assert len(calls) > 10


async def test_progress_between_failures_starts_a_new_outage_with_a_fresh_budget() -> None:
    committed = [0]

    async def moves_on_then_fails(attempt: int) -> str:
        if attempt < 6:
            committed[0] += 1  # a chunk committed before each fault
            raise TransientTargetError()
        return "done"

    policy = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.002)
    assert await retry_transient(moves_on_then_fails, policy, progress=lambda: committed[0]) == "done"


async def test_the_caller_decides_what_is_transient() -> None:
    calls: list[int] = []

    async def refused_once(attempt: int) -> str:
        calls.append(attempt)
        if attempt == 0:
            raise SourceFailed()
        return "ok"

    assert await retry_transient(refused_once, FAST, transient=lambda e: isinstance(e, SourceFailed)) == "ok"
    assert calls == [0, 1]

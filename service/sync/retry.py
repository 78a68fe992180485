"""Retry of transient errors with full-jitter exponential back-off, bounded in attempts and total time,
so a dropped connection heals quickly but a dead system still fails the run within a known budget.
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from service.sync.errors import is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 3.0
    deadline: float = 60.0
    """Seconds after the first attempt began when no further attempt starts."""

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)] (AWS architecture blog)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


async def retry_transient(operation: Callable[[int], Awaitable[T]], policy: RetryPolicy = RetryPolicy()) -> T:
    """Await `operation(attempt)` until it succeeds or raises a terminal error or the budget runs out."""
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return await operation(attempt)
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            pause = policy.delay(attempt)
            if attempt >= policy.attempts or time.monotonic() - started + pause > policy.deadline:
                raise
            log.warning("transient error, attempt %d of %d in %.2fs: %s", attempt + 1, policy.attempts, pause, exc)
            await asyncio.sleep(pause)

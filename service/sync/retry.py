"""Retry of transient errors with full-jitter exponential back-off, bounded in time per outage, so a dropped
connection or a restarted database heals in place but a dead system still fails the run within a known
budget (`BATCHSYNC_TRANSIENT_RETRY_SECONDS`, docs/spec.md §9). Each retry is counted by its error code
(`batchsync_transient_retries_total`), besides its warning line.
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from schemas.events import ErrorCode
from service.observability.metrics import transient_retried
from service.sync.errors import SyncError, is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    budget: float = 60.0
    """Seconds an outage may last: no attempt starts later than this after its first failure."""
    base_delay: float = 0.2
    max_delay: float = 5.0
    attempts: int | None = None
    """At most this many attempts per outage (None: as many as the budget allows)."""

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)] (AWS architecture blog)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


async def retry_transient(
    operation: Callable[[int], Awaitable[T]],
    policy: RetryPolicy = RetryPolicy(),
    *,
    transient: Callable[[BaseException], bool] = is_transient,
    progress: Callable[[], object] = lambda: None,
) -> T:
    """Await `operation(attempt)` until it succeeds, raises a terminal error, or an outage outlasts the budget.

    `progress()` tells whether the operation moved on between two failures (e.g. the chunks it committed):
    when it did, the next failure is a new outage with a fresh budget.
    """
    attempt, tries, outage_started, mark = 0, 0, 0.0, progress()
    while True:
        try:
            return await operation(attempt)
        except Exception as exc:
            if not transient(exc):
                raise
            now = time.monotonic()
            if tries == 0 or progress() != mark:
                tries, outage_started, mark = 0, now, progress()
            tries += 1
            attempt += 1
            pause = policy.delay(tries)
            out_of_tries = policy.attempts is not None and tries >= policy.attempts
            if out_of_tries or now - outage_started + pause > policy.budget:
                raise
            transient_retried(exc.code.value if isinstance(exc, SyncError) else ErrorCode.INTERNAL.value)
            log.warning("transient error, attempt %d in %.2fs (%.0fs of %.0fs into the outage): %s",
                        attempt + 1, pause, now - outage_started, policy.budget, exc)
            await asyncio.sleep(pause)

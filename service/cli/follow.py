"""The live view of one run for `sync --follow`: a bar with a steady rate, an ETA and the run's phase.

The rate is a moving average over the last `RATE_WINDOW_SECONDS` of the run's own clock (the events'
`elapsedMs`), so events that arrive in bursts do not make it jump; the ETA is what is left of
`totalEstimate` at that rate. The phase (`reading`, `writing`, `publishing`) says what the run does when
the count stands still, e.g. while an overwrite swaps its staging table in at the end.

Progress comes from the run's `BatchSyncProgress` events on `P.events` (a group-less consumer positioned at
the end before the request, so no event of the run is missed); without a reachable broker it polls
`GET /integration/batch/{id}/runs/{runId}` instead.
"""

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.status import TERMINAL

if TYPE_CHECKING:
    from consumers.event_feed import EventFeed

POLL_SECONDS = 0.5
CHECK_SECONDS = 5.0
RATE_WINDOW_SECONDS = 5.0
console = Console(stderr=True)


class RateMeter:
    """Rows per second over a sliding window of (seconds, rows written) samples, and the time left."""

    def __init__(self, window: float = RATE_WINDOW_SECONDS) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, seconds: float, written: int) -> None:
        if self.samples and seconds <= self.samples[-1][0]:
            self.samples[-1] = (self.samples[-1][0], max(written, self.samples[-1][1]))
            return
        self.samples.append((seconds, written))
        while len(self.samples) > 2 and seconds - self.samples[1][0] >= self.window:
            self.samples.popleft()

    @property
    def rate(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, w0), (t1, w1) = self.samples[0], self.samples[-1]
        return (w1 - w0) / (t1 - t0)

    def eta(self, total: int | None) -> float | None:
        """Seconds until `total` rows at the current rate; None without a total or a rate."""
        rate, done = self.rate, (self.samples[-1][1] if self.samples else 0)
        if total is None or not rate or rate <= 0:
            return None
        return max(total - done, 0) / rate


def describe(rate: float | None, eta: float | None, phase: str | None) -> str:
    """The text after the bar: `12,345 rows/s · ETA 0:42 · writing`."""
    parts = []
    if rate is not None:
        parts.append(f"{rate:,.0f} rows/s")
    if eta is not None and phase != "publishing":
        minutes, seconds = divmod(int(eta + 0.5), 60)
        parts.append(f"ETA {minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60
                     else f"ETA {minutes}:{seconds:02d}")
    if phase:
        parts.append(phase)
    return " · ".join(parts)


class Follower:
    """Feeds one Rich progress bar from events or polls until the run reaches a terminal status."""

    def __init__(self, client: httpx.AsyncClient, batch_id: int) -> None:
        self.client = client
        self.batch_id = batch_id
        self.meter = RateMeter()
        self.started = time.monotonic()
        self.phase: str | None = None
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task(f"batch {batch_id}", total=None, detail="")

    def show(self, written: int, total: int | None, seconds: float, phase: str | None) -> None:
        self.meter.add(seconds, written)
        self.phase = phase or self.phase
        detail = describe(self.meter.rate, self.meter.eta(total), self.phase)
        self.progress.update(self.task, completed=written, total=total or None, detail=detail)

    async def fetch(self, run_id: str) -> dict[str, Any]:
        """The run as the API shows it now."""
        response = await self.client.get(f"/integration/batch/{self.batch_id}/runs/{run_id}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        run = body.get("data") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(run, dict):
            message = body.get("message") if isinstance(body, dict) else response.text[:200]
            raise RuntimeError(f"GET run {run_id}: HTTP {response.status_code} {message}")
        return run

    async def by_polling(self, run_id: str) -> dict[str, Any]:
        while True:
            run = await self.fetch(run_id)
            self.show(int(run.get("recordsWritten") or 0), run.get("totalEstimate"),
                      time.monotonic() - self.started, run.get("phase"))
            if run.get("status") in TERMINAL:
                return run
            await asyncio.sleep(POLL_SECONDS)

    async def by_events(self, feed: "EventFeed", run_id: str) -> dict[str, Any]:
        from schemas.events import BatchSyncCompleted, BatchSyncProgress

        last_poll = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # not wait_for: on 3.11 it can drop a cancel (Ctrl-C)
                    event = await feed.events.get()
                if str(event.run_id) == run_id:
                    if isinstance(event, BatchSyncProgress):
                        self.show(event.records_written, event.total_estimate, event.elapsed_ms / 1000,
                                  event.phase)
                    elif isinstance(event, BatchSyncCompleted):
                        return await self.fetch(run_id)
            if time.monotonic() - last_poll > CHECK_SECONDS:
                last_poll = time.monotonic()
                run = await self.fetch(run_id)
                if run.get("status") in TERMINAL:
                    return run

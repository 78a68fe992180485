"""The rebuilt audit trail as JSON Lines: one line per run, written as soon as the run's outcome is read,
so a run's progress steps are held only while it is open and memory stays flat over a long log."""

import json
from collections.abc import Iterable
from datetime import datetime
from typing import IO

from service.audit.trail import RunTrail, to_millis


class TrailWriter:
    def __init__(self, output: IO[str], since: datetime | None = None) -> None:
        self._output = output
        self._since = to_millis(since)
        self.lines = 0

    def _in_scope(self, trail: RunTrail) -> bool:
        return self._since is None or (trail.started_at is not None and trail.started_at >= self._since)

    def write(self, trail: RunTrail) -> None:
        """Write the run's line (once) and let go of its steps."""
        if trail.written:
            return
        trail.written = True
        if self._in_scope(trail):
            self._output.write(json.dumps(trail.record(), ensure_ascii=False) + "\n")
            self.lines += 1
        trail.steps = None

    def finish(self, trails: Iterable[RunTrail]) -> None:
        """Write the runs the log leaves open (still in progress, or their outcome was lost)."""
        for trail in trails:
            self.write(trail)
        self._output.flush()

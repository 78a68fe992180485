"""Fire times of a schedule, in UTC: pure functions of the schedule and a moment.

Cron expressions are read by croniter in the schedule's timezone. Around daylight-saving changes they follow
cron's usual rule: a time the spring change skips fires at the first moment after it (02:30 Europe/Berlin on
the last Sunday of March fires at 03:00 CEST), and a time the autumn change repeats fires once, unless the
hour field is a wildcard (`0 * * * *` fires every real hour, both 02:00 included). Intervals are multiples of
`intervalSeconds` since the Unix epoch, so every scheduler derives the same fire times with no shared state.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from schemas.api import CRON_HORIZON_YEARS, ScheduleSpec
from schemas.base import format_time

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_SKIPS = 4
"""Repeated wall-clock times skipped in a row at most (one autumn change repeats one hour)."""


def next_fire(spec: ScheduleSpec, after: datetime) -> datetime:
    """The first fire strictly after `after`."""
    if spec.interval_seconds is not None:
        return EPOCH + timedelta(seconds=(_elapsed(after) // spec.interval_seconds + 1) * spec.interval_seconds)
    zone = ZoneInfo(spec.timezone)
    times = croniter(spec.cron or "", after.astimezone(zone), max_years_between_matches=CRON_HORIZON_YEARS)
    for _ in range(_MAX_SKIPS):
        candidate: datetime = times.get_next(datetime)
        if not _repeat(spec, candidate, zone):
            return candidate.astimezone(UTC)
    return candidate.astimezone(UTC)


def latest_fire(spec: ScheduleSpec, at: datetime) -> datetime:
    """The last fire at or before `at`: what a scheduler that was away fires once to catch up."""
    if spec.interval_seconds is not None:
        return EPOCH + timedelta(seconds=_elapsed(at) // spec.interval_seconds * spec.interval_seconds)
    zone = ZoneInfo(spec.timezone)
    times = croniter(spec.cron or "", (at + timedelta(seconds=1)).astimezone(zone),
                     max_years_between_matches=CRON_HORIZON_YEARS)
    for _ in range(_MAX_SKIPS):
        candidate: datetime = times.get_prev(datetime)
        if not _repeat(spec, candidate, zone):
            return candidate.astimezone(UTC)
    return candidate.astimezone(UTC)


def fire_request_id(batch_id: int, fire_time: datetime) -> str:
    """`schedule:<batchId>:<fire time RFC 3339>`: the same for every scheduler that fires it (docs/spec.md §9)."""
    return f"schedule:{batch_id}:{format_time(fire_time)}"


def _elapsed(moment: datetime) -> int:
    """Whole seconds since the epoch (fire times are whole seconds)."""
    return int((moment - EPOCH).total_seconds() // 1)


def _repeat(spec: ScheduleSpec, candidate: datetime, zone: ZoneInfo) -> bool:
    """True for the second occurrence of a wall-clock time the autumn change repeats, when the hour is fixed."""
    hours = (spec.cron or "").split()[1]
    if hours.startswith("*"):
        return False
    wall = candidate.astimezone(zone).replace(tzinfo=None)
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return False
    return candidate.astimezone(UTC) == second.astimezone(UTC)

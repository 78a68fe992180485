"""Fire times of schedules (service/scheduling/fires.py): cron across daylight-saving changes in Europe/Berlin and
America/New_York, intervals on the epoch grid, the one catch-up fire after downtime, and the fire's requestId."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from schemas.api import ScheduleSpec
from service.scheduling.fires import fire_request_id, latest_fire, next_fire


def fires(spec: ScheduleSpec, start: datetime, count: int) -> list[str]:
    out, moment = [], start
    for _ in range(count):
        moment = next_fire(spec, moment)
        out.append(moment.strftime("%m-%d %H:%MZ"))
    return out


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_berlin_daily_across_spring_forward_fires_after_the_gap() -> None:
    spec = ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin")
    # 2026-03-29 02:30 does not exist in Berlin: cron's rule fires at the first moment after the gap, 03:00 CEST
    assert fires(spec, utc(2026, 3, 27), 4) == ["03-27 01:30Z", "03-28 01:30Z", "03-29 01:00Z", "03-30 00:30Z"]


def test_berlin_daily_across_fall_back_fires_once() -> None:
    spec = ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin")
    # 2026-10-25 02:30 happens twice (CEST then CET): a fixed-hour job fires at the first only
    assert fires(spec, utc(2026, 10, 23), 4) == ["10-23 00:30Z", "10-24 00:30Z", "10-25 00:30Z", "10-26 01:30Z"]


def test_berlin_hourly_across_fall_back_fires_every_real_hour() -> None:
    spec = ScheduleSpec(cron="0 * * * *", timezone="Europe/Berlin")
    assert fires(spec, utc(2026, 10, 24, 23, 30), 4) == ["10-25 00:00Z", "10-25 01:00Z", "10-25 02:00Z",
                                                         "10-25 03:00Z"]


def test_new_york_across_both_changes() -> None:
    spring = ScheduleSpec(cron="30 2 * * *", timezone="America/New_York")
    assert fires(spring, utc(2026, 3, 7), 3) == ["03-07 07:30Z", "03-08 07:00Z", "03-09 06:30Z"]
    autumn = ScheduleSpec(cron="30 1 * * *", timezone="America/New_York")
    assert fires(autumn, utc(2026, 10, 31, 12), 3) == ["11-01 05:30Z", "11-02 06:30Z", "11-03 06:30Z"]


def test_weekday_cron_in_utc_by_default() -> None:
    spec = ScheduleSpec(cron="0 9 * * 1-5")
    assert spec.timezone == "UTC"
    assert fires(spec, utc(2026, 12, 4, 10), 2) == ["12-07 09:00Z", "12-08 09:00Z"]  # Friday → Monday, Tuesday


def test_interval_fires_on_the_epoch_grid_whoever_computes_them() -> None:
    spec = ScheduleSpec(interval_seconds=90)
    assert next_fire(spec, utc(2026, 1, 1, 0, 0, 1)) == utc(2026, 1, 1, 0, 1, 30)
    assert next_fire(spec, utc(2026, 1, 1, 0, 1, 30)) == utc(2026, 1, 1, 0, 3, 0)  # strictly after
    assert latest_fire(spec, utc(2026, 1, 1, 0, 1, 29)) == utc(2026, 1, 1, 0, 0, 0)


def test_catch_up_is_the_latest_missed_fire() -> None:
    spec = ScheduleSpec(cron="*/5 * * * *", timezone="Asia/Shanghai")
    back = utc(2026, 12, 1, 10, 7, 30)  # three hours of downtime end here: one fire, at 10:05
    assert latest_fire(spec, back) == utc(2026, 12, 1, 10, 5)
    assert latest_fire(spec, utc(2026, 12, 1, 10, 5)) == utc(2026, 12, 1, 10, 5)  # at or before
    assert next_fire(spec, back) == utc(2026, 12, 1, 10, 10)
    daily = ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin")
    assert latest_fire(daily, utc(2026, 10, 25, 2)) == utc(2026, 10, 25, 0, 30)  # not the repeated 02:30


def test_request_id_names_the_batch_and_the_fire_time() -> None:
    assert fire_request_id(7, utc(2026, 12, 1, 2, 30)) == "schedule:7:2026-12-01T02:30:00.000Z"
    local = datetime(2026, 12, 1, 3, 30, tzinfo=UTC) + timedelta(0)
    assert fire_request_id(7, local.astimezone()) == "schedule:7:2026-12-01T03:30:00.000Z"


@pytest.mark.parametrize(("body", "field"), [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * * *"}, "cron"),
    ({"cron": "0 2 * * *", "timezone": "Europe/Nowhere"}, "timezone"),
    ({"cron": "0 2 * * *", "timezone": "../../etc/passwd"}, "timezone"),
    ({"intervalSeconds": 0}, "intervalSeconds"),
    ({"intervalSeconds": -5}, "intervalSeconds"),
])
def test_bad_schedules_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ScheduleSpec.model_validate(body)
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


def test_a_schedule_is_a_cron_or_an_interval() -> None:
    for body in ({}, {"cron": "0 2 * * *", "intervalSeconds": 60}):
        with pytest.raises(ValidationError):
            ScheduleSpec.model_validate(body)


@pytest.mark.parametrize("cron", ["0 0 31 2 *", "0 0 30 2 *", "*/0 * * * *", "0-99999999999 * * * *", "H * * * *"])
def test_a_cron_that_never_fires_or_does_not_parse_is_refused(cron: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ScheduleSpec(cron=cron)
    assert caught.value.errors()[0]["loc"] == ("cron",)


@pytest.mark.parametrize("zone", ["a" * 64, "zone.tab", "posixrules", "Europe/../UTC", "/etc/localtime"])
def test_a_timezone_is_a_name_of_the_database_never_a_path(zone: str) -> None:
    with pytest.raises(ValidationError):
        ScheduleSpec(cron="0 2 * * *", timezone=zone)

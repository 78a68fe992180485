"""The `sync --follow` view: a rate that does not jump with bursty events, an ETA from `totalEstimate`,
and the phase shown when the count stands still."""

import pytest

from service.cli.follow import RateMeter, describe


def test_rate_is_a_moving_average_over_the_window() -> None:
    meter = RateMeter(window=5.0)
    assert meter.rate is None
    for second in range(11):
        meter.add(float(second), second * 1000)
    assert meter.rate == pytest.approx(1000)
    meter.add(10.5, 10_000)  # a burst arrives late, then a catch-up: the average barely moves
    meter.add(10.6, 11_600)
    assert 1000 <= meter.rate <= 1300
    per_event = (11_600 - 10_000) / 0.1
    assert meter.rate < per_event / 10


def test_old_samples_leave_the_window() -> None:
    meter = RateMeter(window=2.0)
    for second, written in [(0, 0), (1, 100), (2, 200), (3, 10_200), (4, 20_200)]:
        meter.add(float(second), written)
    assert meter.rate == pytest.approx(10_000)


def test_eta_from_the_estimate_and_the_rate() -> None:
    meter = RateMeter()
    meter.add(0.0, 0)
    assert meter.eta(10_000) is None
    meter.add(2.0, 2_000)
    assert meter.eta(10_000) == pytest.approx(8.0)
    assert meter.eta(None) is None
    assert meter.eta(1_000) == 0


def test_repeated_or_older_samples_never_divide_by_zero() -> None:
    meter = RateMeter()
    meter.add(1.0, 10)
    meter.add(1.0, 20)
    assert meter.rate is None
    meter.add(0.5, 30)
    meter.add(2.0, 130)
    assert meter.rate == pytest.approx(100)


def test_the_line_names_rate_eta_and_phase() -> None:
    assert describe(12_345.6, 42.2, "writing") == "12,346 rows/s · ETA 0:42 · writing"
    assert describe(10.0, 3_725, None) == "10 rows/s · ETA 1:02:05"
    assert describe(None, None, None) == ""
    assert describe(0.0, None, "publishing") == "0 rows/s · publishing"
    assert describe(100.0, 5.0, "publishing") == "100 rows/s · publishing", "no ETA while the target publishes"

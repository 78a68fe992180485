"""OffsetTracker: commits never pass a record whose effect is not durable."""

from consumers.offsets import OffsetTracker

A, B = ("t", 0), ("t", 1)


def test_nothing_committable_before_any_record_is_done() -> None:
    tracker = OffsetTracker()
    tracker.track(A, 0)
    tracker.track(A, 1)
    assert tracker.committable() == {}
    assert tracker.pending(A) == 2


def test_in_order_completion_commits_the_next_offset() -> None:
    tracker = OffsetTracker()
    for offset in range(3):
        tracker.track(A, offset)
    tracker.done(A, 0)
    tracker.done(A, 1)
    assert tracker.committable() == {A: 2}
    assert tracker.pending(A) == 1


def test_out_of_order_completion_waits_for_the_prefix() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.track(A, offset)
    tracker.done(A, 12)
    tracker.done(A, 11)
    assert tracker.committable() == {}
    assert tracker.pending(A) == 2
    tracker.done(A, 10)
    assert tracker.committable() == {A: 13}
    tracker.done(A, 13)
    assert tracker.committable() == {A: 14}
    assert tracker.pending(A) == 0


def test_gaps_in_offsets_do_not_block_the_prefix() -> None:
    tracker = OffsetTracker()
    for offset in (5, 7, 9):
        tracker.track(A, offset)
    tracker.done(A, 7)
    assert tracker.committable() == {}
    tracker.done(A, 5)
    assert tracker.committable() == {A: 8}
    tracker.done(A, 9)
    assert tracker.committable() == {A: 10}


def test_committable_reports_only_partitions_that_advanced() -> None:
    tracker = OffsetTracker()
    tracker.track(A, 0)
    tracker.track(B, 0)
    tracker.track(B, 1)
    tracker.done(A, 0)
    tracker.done(B, 0)
    assert tracker.committable() == {A: 1, B: 1}
    assert tracker.committable() == {}
    tracker.done(B, 1)
    assert tracker.committable() == {B: 2}


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.track(A, 0)
    tracker.track(B, 100)
    tracker.done(B, 100)
    assert tracker.committable() == {B: 101}
    assert tracker.pending(A) == 1


def test_forget_drops_revoked_partitions() -> None:
    tracker = OffsetTracker()
    tracker.track(A, 0)
    tracker.track(A, 1)
    tracker.track(B, 0)
    tracker.done(A, 1)
    tracker.forget([A])
    assert tracker.pending(A) == 0
    tracker.done(A, 0)
    assert tracker.committable() == {}
    tracker.track(A, 0)
    tracker.done(A, 0)
    assert tracker.committable() == {A: 1}
    assert tracker.pending(B) == 1


def test_done_for_unknown_offsets_and_partitions_is_ignored() -> None:
    tracker = OffsetTracker()
    tracker.done(A, 3)
    tracker.track(A, 0)
    tracker.done(A, 5)
    assert tracker.committable() == {}
    assert tracker.pending(A) == 1


def test_redelivered_offsets_below_the_position_are_ignored() -> None:
    tracker = OffsetTracker()
    tracker.track(A, 0)
    tracker.done(A, 0)
    assert tracker.committable() == {A: 1}
    tracker.track(A, 0)
    tracker.track(A, 1)
    assert tracker.pending(A) == 1
    tracker.track(A, 1)
    assert tracker.pending(A) == 1
    tracker.done(A, 1)
    assert tracker.committable() == {A: 2}


def test_done_twice_counts_once() -> None:
    tracker = OffsetTracker()
    tracker.track(A, 0)
    tracker.track(A, 1)
    tracker.done(A, 1)
    tracker.done(A, 1)
    assert tracker.pending(A) == 1
    tracker.done(A, 0)
    assert tracker.committable() == {A: 2}
    assert tracker.pending(A) == 0


def test_tracked_out_of_order_is_kept_sorted() -> None:
    tracker = OffsetTracker()
    tracker.track(A, 3)
    tracker.track(A, 1)
    tracker.done(A, 3)
    assert tracker.committable() == {}
    tracker.done(A, 1)
    assert tracker.committable() == {A: 4}

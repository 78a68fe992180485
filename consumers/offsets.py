"""Which offsets may be committed when records finish out of order.

A partition's committable position is the offset after the longest prefix of finished records (in
the order they were taken), so a crash never skips a record whose effect was not yet durable.
"""

import bisect
from collections.abc import Hashable, Iterable


class _Partition:
    __slots__ = ("offsets", "finished", "position", "reported")

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.finished: set[int] = set()
        self.position: int | None = None
        self.reported: int | None = None


class OffsetTracker:
    """Per partition: offsets taken (`track`) and made durable (`done`); pure bookkeeping, no I/O."""

    def __init__(self) -> None:
        self._partitions: dict[Hashable, _Partition] = {}

    def track(self, tp: Hashable, offset: int) -> None:
        """A record was taken for processing; offsets already covered by the position are ignored."""
        state = self._partitions.setdefault(tp, _Partition())
        if state.position is not None and offset < state.position:
            return
        index = bisect.bisect_left(state.offsets, offset)
        if index == len(state.offsets) or state.offsets[index] != offset:
            state.offsets.insert(index, offset)

    def done(self, tp: Hashable, offset: int) -> None:
        """The record's effect is durable; unknown offsets are ignored."""
        state = self._partitions.get(tp)
        if state is None:
            return
        index = bisect.bisect_left(state.offsets, offset)
        if index == len(state.offsets) or state.offsets[index] != offset:
            return
        state.finished.add(offset)
        done_prefix = 0
        while done_prefix < len(state.offsets) and state.offsets[done_prefix] in state.finished:
            state.finished.discard(state.offsets[done_prefix])
            done_prefix += 1
        if done_prefix:
            state.position = state.offsets[done_prefix - 1] + 1
            del state.offsets[:done_prefix]

    def committable(self) -> dict[Hashable, int]:
        """Next offset to commit per partition, only for partitions that advanced since the last call."""
        result = {}
        for tp, state in self._partitions.items():
            if state.position is not None and state.position != state.reported:
                result[tp] = state.reported = state.position
        return result

    def forget(self, tps: Iterable[Hashable]) -> None:
        """Drop revoked partitions: their unfinished records will be redelivered to the new owner."""
        for tp in tps:
            self._partitions.pop(tp, None)

    def pending(self, tp: Hashable) -> int:
        """Records taken from `tp` whose effect is not yet durable."""
        state = self._partitions.get(tp)
        return 0 if state is None else len(state.offsets) - len(state.finished)

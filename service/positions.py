"""Where a reader of the bus resumes, as kept in PostgreSQL (`consumer_offsets`), and how it knows the topic is
still the one it read (docs/brokers.md, "A recreated topic").

An offset means something only in the log it was read from: a topic deleted and created again (or a memory-only
broker restarted) numbers its records from 0 again, and once it has grown past a stored position, seeking there
silently skips its first records. So each position is kept with a `Mark`: one record of the partition as it was
read, by offset and digest. Kafka never reuses an offset within a topic, so finding another record (or none) at
the mark's offset means the topic was recreated or truncated, and the partition is read again from its earliest
offset (consumers/loop.py).
"""

from typing import NamedTuple


class Mark(NamedTuple):
    """One record read from a partition: its offset and a digest of its timestamp, key, value and headers."""

    offset: int
    digest: str


class Position(NamedTuple):
    """A partition's next offset to read, and a mark of the log it was read from (None: not known, not checked)."""

    next_offset: int
    mark: Mark | None = None

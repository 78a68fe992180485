"""A slice's share of the source: a half-open range of one column, stored with the run as JSON."""

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SliceRange:
    """Rows with `lo <= column < hi`; a None bound is open. `nulls`: this slice also takes the rows whose column is
    NULL (exactly one slice of a plan does, so no row is left out). Bounds are JSON values: integers, or ISO 8601
    strings for dates and timestamps (`kind` says which, so a source binds them with the right type)."""

    column: str
    kind: str
    """`int`, `date` or `datetime` (service.connectors.base.KINDS)."""
    lo: Any | None = None
    hi: Any | None = None
    nulls: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"column": self.column, "kind": self.kind, "lo": self.lo, "hi": self.hi, "nulls": self.nulls}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SliceRange":
        return cls(column=str(data["column"]), kind=str(data["kind"]), lo=data.get("lo"), hi=data.get("hi"),
                   nulls=bool(data.get("nulls", False)))

    def describe(self) -> str:
        """`[lo, hi)` as people read it in history and events."""
        lo = "-∞" if self.lo is None else str(self.lo)
        hi = "+∞" if self.hi is None else str(self.hi)
        return f"{self.column} ∈ [{lo}, {hi})" + (" ∪ NULL" if self.nulls else "")


def slice_key(checkpoint_key: uuid.UUID, number: int) -> uuid.UUID:
    """The checkpoint key of slice `number` of a run chain: a retry's slice finds its predecessor's checkpoint."""
    return uuid.uuid5(checkpoint_key, f"slice-{number}")

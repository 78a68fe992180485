"""The connector contract: one dataset with every type of the mapping table, the shapes a connector case
provides, and helpers to run the real engine between a case and the PostgreSQL reference.

A case module in `tests/contract/cases/` exposes `SOURCE_CASES` and/or `TARGET_CASES`: classes whose
constructor takes the `Context` (real services and a scratch folder); the suites in
`test_source_contract.py` and `test_target_contract.py` run against every case they find.
"""

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from schemas.api import MappingEntry, SourceSpec, TargetSpec
from service.connectors.registry import REGISTRY
from service.sync.engine import execute
from service.sync.model import Endpoint, ProgressUpdate, RunResult, RunSpec


@dataclass(frozen=True)
class Context:
    pg_dsn: str
    """A scratch PostgreSQL database (also the reference source and target)."""
    tmp_dir: Path
    kafka_bootstrap: str
    mysql_url: str = "mysql://root@127.0.0.1:3306/test"


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    """One of int, float, decimal, string, bool, date, datetime, json, binary."""


FIELDS = [
    Field("id", "int"), Field("name", "string"), Field("amount", "decimal"), Field("ratio", "float"),
    Field("paid", "bool"), Field("day", "date"), Field("at", "datetime"), Field("doc", "json"),
    Field("blob", "binary"),
]
LONG_TEXT = "长文本" * 40_000


def make_rows(count: int, start: int = 1) -> list[dict[str, Any]]:
    """Rows covering the edges: NULLs, Chinese text, very long text, negative decimals with scale,
    time zones, nested JSON, binary with NUL bytes."""
    rows = []
    zones = [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
    for i in range(start, start + count):
        null = i % 7 == 0
        rows.append({
            "id": i,
            "name": None if null else (LONG_TEXT if i % 500 == 1 else f"客户-{i} «ü»"),
            "amount": None if null else Decimal(i * 37 % 100000 - 5000) / 100,
            "ratio": None if null else i / 7.0,
            "paid": None if null else i % 2 == 0,
            "day": None if null else date(2026, 1, 1) + timedelta(days=i % 400),
            "at": None if null else datetime(2026, 1, 1, 8, 30, tzinfo=zones[i % 3]) + timedelta(minutes=i),
            "doc": None if null else {"n": i, "tags": ["a", "中"], "nested": {"ok": i % 3 == 0}},
            "blob": None if null else bytes([0, i % 256, 255, 10]),
        })
    return rows


def normalize(kind: str, value: Any) -> Any:
    """A comparable form of a value as any system may return it (text, native, JSON-decoded)."""
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        return round(float(value), 9)
    if kind == "decimal":
        return Decimal(str(value)).quantize(Decimal("0.01"))
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "t", "yes")
    if kind == "date":
        return (value if isinstance(value, date) else date.fromisoformat(str(value)[:10])).isoformat()
    if kind == "datetime":
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    if kind == "json":
        parsed = json.loads(value) if isinstance(value, str | bytes) else value
        return json.dumps(parsed, sort_keys=True, ensure_ascii=False)
    if kind == "binary":
        if isinstance(value, str):
            return base64.b64decode(value) if not value.startswith("\\x") else bytes.fromhex(value[2:])
        return bytes(value)
    return str(value)


def normalized(rows: list[dict[str, Any]], fields: list[Field]) -> list[tuple]:
    return sorted((tuple(normalize(f.kind, row.get(f.name)) for f in fields) for row in rows),
                  key=lambda r: r[0])


class SourceCase(Protocol):
    name: str
    fields: list[Field]
    """The fields this system carries with their types; the reference target has all of FIELDS."""

    async def seed(self, table: str, rows: list[dict[str, Any]]) -> tuple[Endpoint, SourceSpec]: ...

    async def missing(self) -> tuple[Endpoint, SourceSpec]:
        """A reachable system where the table (or file) does not exist."""
        ...

    def unreachable(self, port: int) -> Endpoint | None:
        """An endpoint at 127.0.0.1:port (a server that never answers), or None for local files."""
        ...


class TargetCase(Protocol):
    name: str
    fields: list[Field]
    modes: frozenset[str]

    async def create(self, table: str) -> Endpoint:
        """An empty target table with `fields` (id the primary key)."""
        ...

    async def read(self, endpoint: Endpoint, table: str) -> list[dict[str, Any]]: ...

    def unreachable(self, port: int) -> Endpoint | None: ...


@dataclass
class Recorder:
    """Observer that records progress and can crash the run after a given chunk."""

    crash_after: int | None = None
    updates: list[ProgressUpdate] = field(default_factory=list)
    started: list[tuple[int, int | None]] = field(default_factory=list)

    async def on_start(self, resumed_from_chunk: int, total_estimate: int | None) -> None:
        self.started.append((resumed_from_chunk, total_estimate))

    async def on_chunk(self, update: ProgressUpdate) -> None:
        self.updates.append(update)
        if self.crash_after is not None and update.chunk >= self.crash_after:
            raise Crash(update.chunk)

    async def on_phase(self, update: ProgressUpdate) -> None:
        pass

    def cancel_requested(self) -> bool:
        return False


class Crash(Exception):
    """Stands for a worker dying right after a chunk was made durable."""


def spec_for(source: tuple[Endpoint, SourceSpec], target: Endpoint, table: str, *, mode: str = "append",
             chunk_size: int = 1000, key: uuid.UUID | None = None, mapping: list[MappingEntry] | None = None,
             high_water_mark: Any = None, create: bool = False) -> RunSpec:
    run_id = uuid.uuid4()
    target_spec = TargetSpec(table=table, mode=mode, key_columns=["id"] if mode == "upsert" else None,
                             create=create)
    return RunSpec(run_id=run_id, checkpoint_key=key or run_id, batch_id=1, source_endpoint=source[0],
                   source=source[1], target_endpoint=target, target=target_spec, mapping=mapping,
                   chunk_size=chunk_size, high_water_mark=high_water_mark)


async def sync(spec: RunSpec, observer: Recorder | None = None, connect_timeout: float = 2.0) -> RunResult:
    return await execute(spec, observer or Recorder(), connectors=REGISTRY, connect_timeout=connect_timeout)

"""CSV files as a contract case: a folder of `<table>.csv` files with a header, every kind as text
(decimals exact, binary as `\\x` hex, JSON as its text, times ISO 8601 with their offset)."""

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

from schemas.api import SourceSpec
from service.connectors.csv import KIND
from service.connectors.files.values import to_text
from service.sync.model import Endpoint
from tests.contract.harness import FIELDS, Context
from tests.support.policy import policy_for


def csv_text(rows: list[dict[str, Any]], names: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow(["" if row[n] is None else
                         json.dumps(row[n], ensure_ascii=False) if isinstance(row[n], dict) else to_text(row[n])
                         for n in names])
    return buffer.getvalue()


def read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(handle)]


class CsvCase:
    name = "csv"
    fields = FIELDS
    modes = KIND.modes

    def __init__(self, ctx: Context) -> None:
        self.folder = ctx.tmp_dir / f"csv_{uuid.uuid4().hex[:6]}"
        self.folder.mkdir()

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(type="csv", params={"path": str(self.folder)}, policy=policy_for())

    async def seed(self, table: str, rows: list[dict[str, Any]]) -> tuple[Endpoint, SourceSpec]:
        (self.folder / f"{table}.csv").write_text(csv_text(rows, [f.name for f in self.fields]), encoding="utf-8")
        return self.endpoint, SourceSpec(table=table)

    async def missing(self) -> tuple[Endpoint, SourceSpec]:
        return self.endpoint, SourceSpec(table=f"missing_{uuid.uuid4().hex[:8]}")

    def unreachable(self, port: int) -> Endpoint | None:
        return None

    async def create(self, table: str) -> Endpoint:
        (self.folder / f"{table}.csv").write_text(",".join(f.name for f in self.fields) + "\n", encoding="utf-8")
        return self.endpoint

    async def read(self, endpoint: Endpoint, table: str) -> list[dict[str, Any]]:
        return read_csv(Path(endpoint.params["path"]) / f"{table}.csv")


SOURCE_CASES = [CsvCase]
TARGET_CASES = [CsvCase]

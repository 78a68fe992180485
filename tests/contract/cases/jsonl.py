"""JSON Lines files as a contract case: a folder of `<table>.jsonl` files, JSON types where JSON has
them, decimals and times as strings, binary as base64, JSON documents nested."""

import json
import uuid
from pathlib import Path
from typing import Any

from schemas.api import SourceSpec
from service.connectors.files.values import json_ready
from service.connectors.jsonl import KIND
from service.sync.model import Endpoint
from tests.contract.harness import FIELDS, Context
from tests.support.policy import policy_for


def jsonl_text(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps({k: json_ready(v) for k, v in row.items()}, ensure_ascii=False) + "\n"
                   for row in rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class JsonlCase:
    name = "jsonl"
    fields = FIELDS
    modes = KIND.modes

    def __init__(self, ctx: Context) -> None:
        self.folder = ctx.tmp_dir / f"jsonl_{uuid.uuid4().hex[:6]}"
        self.folder.mkdir()

    def endpoint(self, declared: bool) -> Endpoint:
        """An empty file has no keys to describe, so its columns are declared as a user would."""
        params: dict[str, Any] = {"path": str(self.folder)}
        if declared:
            params["columns"] = {f.name: f.kind for f in self.fields}
        return Endpoint(type="jsonl", params=params, policy=policy_for())

    async def seed(self, table: str, rows: list[dict[str, Any]]) -> tuple[Endpoint, SourceSpec]:
        (self.folder / f"{table}.jsonl").write_text(jsonl_text(rows), encoding="utf-8")
        return self.endpoint(declared=not rows), SourceSpec(table=table)

    async def missing(self) -> tuple[Endpoint, SourceSpec]:
        return self.endpoint(declared=False), SourceSpec(table=f"missing_{uuid.uuid4().hex[:8]}")

    def unreachable(self, port: int) -> Endpoint | None:
        return None

    async def create(self, table: str) -> Endpoint:
        (self.folder / f"{table}.jsonl").write_bytes(b"")
        return self.endpoint(declared=True)

    async def read(self, endpoint: Endpoint, table: str) -> list[dict[str, Any]]:
        return read_jsonl(Path(endpoint.params["path"]) / f"{table}.jsonl")


SOURCE_CASES = [JsonlCase]
TARGET_CASES = [JsonlCase]

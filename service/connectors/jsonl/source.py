"""JSON Lines files as a source and a target: one JSON object per line, keys as columns.

Columns come from `params.columns` or from the keys of the first records (their JSON types give the
kinds). Decimals, dates and binary travel as strings (base64 for binary) and are converted by the
target column's type; JSON columns are nested values, not strings holding JSON. Keys a record has
beyond the columns are ignored; a missing key is NULL.
"""

import asyncio
import json
from collections.abc import Iterator
from itertools import islice
from typing import Any

from service.connectors.base import Column
from service.connectors.files.options import LineReader, check_path, declared_columns, display_name
from service.connectors.files.source import FileSource
from service.connectors.files.target import FileTarget, encoded
from service.connectors.files.values import SQL_OF_KIND, json_ready
from service.sync.errors import SourceFailed
from service.sync.model import Endpoint
from service.sync.types import kind_of_json

SAMPLE_RECORDS = 100
"""Records read to find the columns when `params.columns` does not declare them."""


def _objects(reader: LineReader) -> Iterator[dict[str, Any]]:
    name = display_name(reader.options, reader.path)
    for line in reader:
        try:
            value = json.loads(line)
        except ValueError as exc:
            if not line.strip():
                continue
            raise SourceFailed(f"JSON 格式错误：{name} 第 {reader.line} 行") from exc
        if type(value) is not dict:
            raise SourceFailed(f"不是 JSON 对象：{name} 第 {reader.line} 行")
        yield value


def sampled_columns(reader: LineReader, limit: int) -> list[Column]:
    """Keys in order of first appearance over the first `limit` records, kinds from their first non-null value."""
    kinds: dict[str, str | None] = {}
    try:
        for record in islice(_objects(reader), limit):
            for key, value in record.items():
                if kinds.get(key) is None:
                    kinds[key] = kind_of_json(value)
    finally:
        reader.close()
    return [Column(key, SQL_OF_KIND[kind or "string"], kind) for key, kind in kinds.items()]


class JsonlSource(FileSource):
    suffix = "jsonl"
    from_text = False

    def describe_files(self) -> list[Column]:
        if self.options.columns is not None:
            return declared_columns(self.options.columns)
        return sampled_columns(LineReader(self.options, self.files[0]), SAMPLE_RECORDS)

    def parse(self, reader: LineReader, first: bool) -> Iterator[list[Any]]:
        names = [c.name for c in self.columns]
        for record in _objects(reader):
            yield [record.get(n) for n in names]


class JsonlTarget(FileTarget):
    """Schemaless unless `params.columns` declares the columns: it carries whatever the mapping plans."""

    suffix = "jsonl"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._documents: set[str] = set()

    def read_schema(self) -> list[Column]:
        return declared_columns(self.options.columns) if self.options.columns is not None else []

    async def accept_columns(self, columns: list[Column]) -> list[Column]:
        """The declared columns, or the planned ones; JSON documents are nested by either's kind."""
        planned = {c.name: c.kind for c in columns}
        if not self.columns:
            self.columns = [Column(c.name, c.sql_type or SQL_OF_KIND[c.kind or "string"], c.kind) for c in columns]
        self._documents = {c.name for c in self.columns if (c.kind or planned.get(c.name)) == "json"}
        return self.columns

    def encode(self, names: list[str], columns: list[str], rows: list[tuple[Any, ...]]) -> bytes:
        index = {c: i for i, c in enumerate(columns)}
        picks = [(n, index[n]) for n in names if n in index]
        documents = self._documents
        lines = []
        for row in rows:
            record = {}
            for name, i in picks:
                value = row[i]
                if name in documents and isinstance(value, str):
                    value = _document(value)
                record[name] = json_ready(value)
            lines.append(json.dumps(record, ensure_ascii=False))
        lines.append("")
        return encoded(self.options, self.path, "\n".join(lines) if rows else "")


def _document(text: str) -> Any:
    """A JSON column handed over as JSON text (PostgreSQL's jsonb) is nested as its value."""
    try:
        return json.loads(text)
    except ValueError:
        return text


async def check_connection(endpoint: Endpoint, connect_timeout: float) -> None:
    """The file, glob or folder exists and is readable (a folder also writable)."""
    await asyncio.to_thread(check_path, endpoint, "jsonl")

"""JSON Lines files as a target: one JSON object per row, its keys the declared or planned columns; JSON
columns are nested values (`files/values.py` for the other kinds); writing and publishing are
`files/target.py`'s.
"""

import json
from typing import Any

from typing_extensions import override

from service.connectors.base import Column
from service.connectors.files.options import declared_columns
from service.connectors.files.target import FileTarget, encoded
from service.connectors.files.values import json_ready
from service.connectors.json_records import RECORD_TYPES


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
            self.columns = [Column(c.name, c.sql_type or RECORD_TYPES.spell(c.kind or "string"), c.kind)
                            for c in columns]
        self._documents = {c.name for c in self.columns if (c.kind or planned.get(c.name)) == "json"}
        return self.columns

    @override
    def header(self, names: list[str]) -> bytes:
        return b""

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

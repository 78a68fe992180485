"""JSON Lines files as a source: one JSON object per line, keys as columns.

Columns come from `params.columns` or from the keys of the first records (their JSON types give the
kinds). Decimals, dates and binary travel as strings (base64 for binary) and are converted to the value
form of the target column; JSON columns are nested values, not strings holding JSON. Keys a record has
beyond the columns are ignored; a missing key is NULL.
"""

import json
from collections.abc import Iterator
from itertools import islice
from typing import Any

from typing_extensions import override

from schemas.messages import at_line, json_malformed, json_not_object
from service.connectors.base import Column
from service.connectors.files.options import LineReader, declared_columns, display_name
from service.connectors.files.source import FileSource
from service.connectors.json_records import RECORD_TYPES
from service.sync.errors import SourceFailed
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
            raise SourceFailed(json_malformed(at_line(name, reader.line))) from exc
        if type(value) is not dict:
            raise SourceFailed(json_not_object(at_line(name, reader.line)))
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
    return [Column(key, RECORD_TYPES.spell(kind or "string"), kind) for key, kind in kinds.items()]


class JsonlSource(FileSource):
    suffix = "jsonl"
    from_text = False

    def describe_files(self) -> list[Column]:
        if self.options.columns is not None:
            return declared_columns(self.options.columns)
        return sampled_columns(LineReader(self.options, self.files[0]), SAMPLE_RECORDS)

    @override
    def parse(self, reader: LineReader, first: bool) -> Iterator[list[Any]]:
        names = [c.name for c in self.columns]
        for record in _objects(reader):
            yield [record.get(n) for n in names]

"""CSV files as a source (stdlib `csv`): header or `column_1…` names, delimiter, quote, encoding (UTF-8,
UTF-8 with BOM, GBK), gzip, and an empty field as NULL (`params.nullValue`).

Values are text of no declared kind (so any target column type is judged compatible) unless
`params.columns` declares kinds; the source converts them to the value form of the target column
(`files/values.py`). An empty string and NULL are the same field in CSV, so an empty string reads back
as NULL under the default `nullValue`.
"""

import asyncio
import contextlib
import csv
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

from schemas.messages import (
    at_line,
    conversion_failed,
    csv_duplicate_header,
    csv_malformed,
    csv_too_many_fields,
    header_mismatch,
    located,
)
from service.connectors.base import Capabilities, Chunk, Column, Position, SelectItem, TargetTypes
from service.connectors.csv.stream import COPY_CSV, header_of, streamable, take_records, utf8
from service.connectors.files.convert import BadRecord
from service.connectors.files.options import LineReader, declared_columns, display_name
from service.connectors.files.source import FileSource
from service.connectors.files.values import Converter, converter
from service.connectors.json_records import RECORD_TYPES
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.rejects import row_of

FIELD_SIZE_LIMIT = 1 << 30
"""Long text fields (the stdlib's default limit is 128 KiB) must not fail a sync."""
csv.field_size_limit(FIELD_SIZE_LIMIT)


def names_of(record: list[str]) -> list[str]:
    names = [name.strip() or f"column_{i}" for i, name in enumerate(record, 1)]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigInvalid(csv_duplicate_header(duplicated))
    return names


class CsvSource(FileSource):
    """Decoded rows, or (when the target parses CSV itself and nothing needs converting) the records'
    bytes as a `csv` copy stream (`csv/stream.py`)."""

    capabilities = Capabilities(copy_format=COPY_CSV)
    suffix = "csv"
    from_text = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._header: list[str] | None = None
        self._kinds: list[Converter | None] = []

    @property
    def null_text(self) -> str | None:
        return None if any(self._kinds) else self.options.null_value

    def _reader(self, reader: LineReader) -> Iterator[list[str]]:
        return csv.reader(reader, delimiter=self.options.delimiter, quotechar=self.options.quote)

    def _first_record(self) -> list[str] | None:
        reader = LineReader(self.options, self.files[0])
        try:
            return next((r for r in self._reader(reader) if r), None)
        except csv.Error as exc:
            raise SourceFailed(csv_malformed(at_line(display_name(self.options, reader.path), reader.line))) from exc
        finally:
            reader.close()

    def describe_files(self) -> list[Column]:
        first = self._first_record()
        if self.options.header and first is not None:
            self._header = first
        if self.options.columns is not None:
            columns = declared_columns(self.options.columns)
        elif first is None:
            columns = []
        elif self.options.header:
            columns = [Column(name, "text") for name in names_of(first)]
        else:
            columns = [Column(f"column_{i}", "text") for i in range(1, len(first) + 1)]
        self._kinds = [None if c.kind in (None, "string") else converter(RECORD_TYPES.form_of(c.sql_type),
                                                                        from_text=True) for c in columns]
        return columns

    def parse(self, reader: LineReader, first: bool) -> Iterator[list[Any]]:
        name = display_name(self.options, reader.path)
        width, null = len(self.columns), self.options.null_value
        kinds = self._kinds if any(self._kinds) else None
        records = self._reader(reader)
        try:
            if first and self.options.header:
                head = next(records, None)
                if head is not None and self._header is not None and head != self._header:
                    raise ConfigInvalid(header_mismatch(name))
            for record in records:
                if len(record) != width:
                    if not record:
                        continue
                    if len(record) > width:
                        raise SourceFailed(csv_too_many_fields(at_line(name, reader.line)))
                    record += [null] * (width - len(record))
                if kinds is None:
                    yield record
                    continue
                values = [None if v == null else v for v in record]
                try:
                    yield self._typed(values, kinds, name, reader.line)
                except SourceFailed as bad:
                    if not self._tolerant:
                        raise
                    yield BadRecord(row_of([c.name for c in self.columns], values), bad.reason)  # type: ignore[misc]
        except csv.Error as exc:
            raise SourceFailed(csv_malformed(at_line(name, reader.line)), detail=str(exc)[:120]) from exc

    async def chunks(
        self, plan: list[SelectItem], target_types: TargetTypes, position: Position, *, size: int, raw: bool
    ) -> AsyncIterator[Chunk]:
        if not (raw and streamable(self.options, self.columns, plan, target_types)):
            async for chunk in super().chunks(plan, target_types, position, size=size, raw=False):
                yield chunk
            return
        columns = [item.target for item in plan]
        pieces = self._byte_chunks(position, size)
        try:
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                data, position = piece
                yield Chunk(number=0, position=position, columns=columns, stream=_once(data))
        finally:
            with contextlib.suppress(ValueError):  # still running in a worker thread after a cancel
                pieces.close()

    def _byte_chunks(self, position: Position, size: int) -> Generator[tuple[bytes, Position]]:
        """UTF-8 bytes of `size` whole records at a time, across the files, with the position after them."""
        index, offset, line = int(position.get("file", 0)), int(position.get("offset", 0)), int(position.get("line", 0))
        parts: list[bytes] = []
        count = 0
        while index < len(self.files):
            reader = LineReader(self.options, self.files[index], offset, line)
            self._cursor = (index, reader)
            try:
                lines = reader.raw_lines()
                if offset == 0 and self.options.header:
                    head = header_of(reader, lines)
                    if head is not None and self._header is not None and head != self._header:
                        raise ConfigInvalid(header_mismatch(display_name(self.options, reader.path)))
                while True:
                    first_line, segment = reader.line + 1, list[bytes]()
                    count += take_records(lines, size - count, segment)
                    if segment:
                        if not segment[-1].endswith(b"\n"):
                            segment[-1] += b"\n"
                        parts.append(utf8(b"".join(segment), reader, first_line))
                    if count < size:
                        break
                    yield b"".join(parts), self._position()
                    parts, count = [], 0
            finally:
                reader.close()
            index, offset, line = index + 1, 0, 0
        self._cursor = (index, None)
        if count:
            yield b"".join(parts), self._position()

    def _typed(self, values: list[Any], kinds: list[Converter | None], name: str, line: int) -> list[Any]:
        """Values of declared kinds as Python values (`params.columns`)."""
        out = []
        for column, value, convert in zip(self.columns, values, kinds, strict=True):
            try:
                out.append(value if convert is None or value is None else convert(value))
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise SourceFailed(located(conversion_failed(column.name), at_line(name, line))) from exc
        return out


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data

"""CSV files as a source and a target (stdlib `csv`): header or `column_1…` names, delimiter, quote,
encoding (UTF-8, UTF-8 with BOM, GBK), gzip, and an empty field as NULL (`params.nullValue`).

Values are text of no declared kind (so any target column type is judged compatible) unless
`params.columns` declares kinds; a source converts them by the target column's type (`files_values.py`).
An empty string and NULL are the same field in CSV, so an empty string reads back as NULL under the
default `nullValue`.
"""

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

from service.connectors.base import Capabilities, Chunk, Column, Position, SelectItem
from service.connectors.csv.stream import COPY_CSV, header_of, streamable, take_records, utf8
from service.connectors.files.options import LineReader, check_path, declared_columns, display_name
from service.connectors.files.source import FileSource
from service.connectors.files.target import FileTarget, encoded
from service.connectors.files.values import Converter, converter, to_text
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.model import Endpoint

FIELD_SIZE_LIMIT = 1 << 30
"""Long text fields (the stdlib's default limit is 128 KiB) must not fail a sync."""
csv.field_size_limit(FIELD_SIZE_LIMIT)


def _names(record: list[str]) -> list[str]:
    names = [name.strip() or f"column_{i}" for i, name in enumerate(record, 1)]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigInvalid(f"CSV 表头列名重复：{', '.join(duplicated)}")
    return names


class CsvSource(FileSource):
    """Decoded rows, or (when the target parses CSV itself and nothing needs converting) the records'
    bytes as a `csv` copy stream (`csv_stream.py`)."""

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
            raise SourceFailed(f"CSV 格式错误：{display_name(self.options, reader.path)} 第 {reader.line} 行") from exc
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
            columns = [Column(name, "text") for name in _names(first)]
        else:
            columns = [Column(f"column_{i}", "text") for i in range(1, len(first) + 1)]
        self._kinds = [None if c.kind in (None, "string") else converter(c.sql_type, from_text=True)
                       for c in columns]
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
                    raise ConfigInvalid(f"文件表头与第一个文件不一致：{name}")
            for record in records:
                if len(record) != width:
                    if not record:
                        continue
                    if len(record) > width:
                        raise SourceFailed(f"列数多于表头：{name} 第 {reader.line} 行")
                    record += [null] * (width - len(record))
                if kinds is None:
                    yield record
                else:
                    yield self._typed([None if v == null else v for v in record], kinds, name, reader.line)
        except csv.Error as exc:
            raise SourceFailed(f"CSV 格式错误：{name} 第 {reader.line} 行", detail=str(exc)[:120]) from exc

    async def chunks(
        self, plan: list[SelectItem], target_types: dict[str, str], position: Position, *, size: int, raw: bool
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
                        raise ConfigInvalid(f"文件表头与第一个文件不一致：{display_name(self.options, reader.path)}")
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
                raise SourceFailed(f"字段转换失败：{column.name}（{name} 第 {line} 行）") from exc
        return out


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class CsvTarget(FileTarget):
    suffix = "csv"

    def read_schema(self) -> list[Column]:
        if self.options.columns is not None:
            return declared_columns(self.options.columns)
        if not self.options.header:
            raise ConfigInvalid("无表头的 CSV 目标须在 params.columns 中声明列")
        reader = LineReader(self.options, self.path)
        try:
            first = next((r for r in csv.reader(reader, delimiter=self.options.delimiter,
                                                quotechar=self.options.quote) if r), None)
        finally:
            reader.close()
        if first is None:
            raise ConfigInvalid(f"目标 CSV 文件没有表头：{self.path.name}")
        return [Column(name, "text") for name in _names(first)]

    def _writer(self, buffer: io.StringIO) -> Any:
        return csv.writer(buffer, delimiter=self.options.delimiter, quotechar=self.options.quote,
                          lineterminator="\n")

    def header(self, names: list[str]) -> bytes:
        if not self.options.header:
            return b""
        buffer = io.StringIO()
        self._writer(buffer).writerow(names)
        return encoded(self.options, self.path, buffer.getvalue())

    def encode(self, names: list[str], columns: list[str], rows: list[tuple[Any, ...]]) -> bytes:
        buffer = io.StringIO()
        writer, null = self._writer(buffer), self.options.null_value
        index = {c: i for i, c in enumerate(columns)}
        picks = None if columns == names else [index.get(n) for n in names]
        for row in rows:
            values = row if picks is None else [None if i is None else row[i] for i in picks]
            writer.writerow([null if v is None else v if type(v) is str else to_text(v) for v in values])
        return encoded(self.options, self.path, buffer.getvalue())


async def check_connection(endpoint: Endpoint, connect_timeout: float) -> None:
    """The file, glob or folder exists and is readable (a folder also writable)."""
    await asyncio.to_thread(check_path, endpoint, "csv")

"""A file source: the sorted files of a batch read record by record in a worker thread, chunk by chunk,
each chunk carrying the resume position (file index, byte offset, line) of the record after it.

The formats (`csv_files.py`, `jsonl_files.py`) only describe their columns and parse records from
decoded lines; streaming, resume, and converting values to the target's column types live here.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from decimal import InvalidOperation
from itertools import islice
from pathlib import Path
from typing import Any, Self

from schemas.api import SourceSpec
from service.connectors.base import Capabilities, Chunk, Column, Position, SelectItem
from service.connectors.files import FileOptions, LineReader, display_name, is_gzip, options_of, source_files
from service.connectors.files_values import Converter, converter
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.model import Endpoint
from service.sync.transforms import row_transform

ESTIMATE_SAMPLE_BYTES = 1 << 20
_CONVERSION_ERRORS = (ValueError, TypeError, ArithmeticError, InvalidOperation)


class FileSource:
    """Base of the CSV and JSON Lines sources; subclasses set `suffix`, `from_text` and the two hooks."""

    capabilities = Capabilities()
    suffix = ""
    from_text = True
    """Whether values arrive as text (CSV) rather than JSON values (JSON Lines)."""

    def __init__(self, endpoint: Endpoint, spec: SourceSpec, connect_timeout: float) -> None:
        if spec.query is not None:
            raise ConfigInvalid("文件源不支持 query，请指定 table（文件名）")
        if spec.cursor_column is not None:
            raise ConfigInvalid("文件源不支持增量同步（cursorColumn），每次同步读取全部文件")
        self.options: FileOptions = options_of(endpoint, self.suffix)
        self._spec = spec
        self.files: list[Path] = []
        self.columns: list[Column] = []
        self._cursor: tuple[int, LineReader | None] = (0, None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        _, reader = self._cursor
        if reader is not None:
            reader.close()

    def describe_files(self) -> list[Column]:
        """The columns, read from the first file (header, first records) or from `params.columns`."""
        raise NotImplementedError

    def parse(self, reader: LineReader, first: bool) -> Iterator[list[Any]]:
        """Records of one file as values in `self.columns` order; `first` says it is read from its start."""
        raise NotImplementedError

    async def describe(self) -> list[Column]:
        self.files = await asyncio.to_thread(source_files, self.options, self._spec.table)
        self.columns = await asyncio.to_thread(self.describe_files)
        return self.columns

    async def start(self, high_water_mark: Any | None) -> Position:
        return {"file": 0, "offset": 0, "line": 0}

    async def estimate(self, position: Position) -> int | None:
        return await asyncio.to_thread(self._estimate, position)

    def _estimate(self, position: Position) -> int | None:
        """Rows left, from the remaining bytes and the line length of a sample; None for gzip."""
        remaining = self.files[int(position.get("file", 0)):]
        if not remaining or any(is_gzip(self.options, f) for f in remaining):
            return None if remaining else 0
        size = sum(f.stat().st_size for f in remaining) - int(position.get("offset", 0))
        with remaining[0].open("rb") as sample_file:
            sample = sample_file.read(ESTIMATE_SAMPLE_BYTES)
        lines = sample.count(b"\n") or 1
        return max(0, round(size * lines / max(len(sample), 1)) - (1 if self.options.header else 0))

    def high_water_mark(self, position: Position, previous: Any | None) -> Any | None:
        return None

    def _records(self, position: Position) -> Iterator[list[Any]]:
        index, offset = int(position.get("file", 0)), int(position.get("offset", 0))
        line, expected = int(position.get("line", 0)), position.get("name")
        moved = index < len(self.files) and display_name(self.options, self.files[index]) != expected
        if expected is not None and moved:
            raise SourceFailed(f"源文件在续传前发生了变化：{expected}")
        while index < len(self.files):
            reader = LineReader(self.options, self.files[index], offset, line)
            self._cursor = (index, reader)
            try:
                yield from self.parse(reader, first=offset == 0)
            finally:
                reader.close()
            index, offset, line = index + 1, 0, 0
        self._cursor = (index, None)

    def _position(self) -> Position:
        index, reader = self._cursor
        if reader is None:
            return {"file": index, "offset": 0, "line": 0}
        return {"file": index, "name": display_name(self.options, reader.path), "offset": reader.offset,
                "line": reader.line}

    def _builder(self, plan: list[SelectItem], target_types: dict[str, str]) -> Callable[[list[Any]], tuple]:
        """Source values → target row: the mapping (Python casts), then each target column's type."""
        names = [c.name for c in self.columns]
        native = {c.name for c in self.columns if c.kind not in (None, "string")}
        converters: list[Converter | None] = [
            converter(target_types[item.target],
                      from_text=self.from_text and item.cast is None and not item.is_constant
                      and item.source not in native)
            for item in plan
        ]
        if all(not item.is_constant and item.cast is None for item in plan):
            picks = [names.index(item.source or "") for item in plan]
            reorder = picks != list(range(len(names)))

            def build(values: list[Any]) -> tuple:
                if reorder:
                    values = [values[i] for i in picks]
                return tuple([v if c is None or v is None else c(v) for v, c in zip(values, converters, strict=True)])
            return build
        transform = row_transform(names, plan)

        def build_mapped(values: list[Any]) -> tuple:
            return tuple([v if c is None or v is None else c(v)
                          for v, c in zip(transform(values), converters, strict=True)])
        return build_mapped

    def _failed_column(self, plan: Sequence[SelectItem], target_types: dict[str, str], values: list[Any]) -> str:
        """Which target column a failed row conversion was about, for the error message."""
        names = [c.name for c in self.columns]
        for item in plan:
            if item.source is None:
                continue
            value = values[names.index(item.source)]
            convert = converter(target_types[item.target], from_text=self.from_text)
            try:
                if value is not None and convert is not None:
                    convert(value)
            except _CONVERSION_ERRORS:
                return item.target
        return "?"

    def _read_chunk(
        self, records: Iterator[list[Any]], size: int, build: Callable[[list[Any]], tuple],
        plan: list[SelectItem], target_types: dict[str, str],
    ) -> tuple[list[tuple], Position]:
        rows: list[tuple] = []
        for values in islice(records, size):
            try:
                rows.append(build(values))
            except _CONVERSION_ERRORS as exc:
                _, reader = self._cursor
                where = f"{display_name(self.options, reader.path)} 第 {reader.line} 行" if reader else "?"
                column = self._failed_column(plan, target_types, values)
                raise SourceFailed(f"字段转换失败：{column}（{where}）", detail=type(exc).__name__) from exc
        return rows, self._position()

    async def chunks(
        self, plan: list[SelectItem], target_types: dict[str, str], position: Position, *, size: int, raw: bool
    ) -> AsyncIterator[Chunk]:
        build = self._builder(plan, target_types)
        columns = [item.target for item in plan]
        records = self._records(position)
        try:
            while True:
                rows, position = await asyncio.to_thread(self._read_chunk, records, size, build, plan, target_types)
                if rows:
                    yield Chunk(number=0, position=position, columns=columns, rows=rows)
                if len(rows) < size:
                    break
        finally:
            with contextlib.suppress(ValueError):  # still running in a worker thread after a cancel
                records.close()

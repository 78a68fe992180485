"""A file source: the sorted files of a batch read record by record in a worker thread, chunk by chunk,
each chunk carrying the resume position (file index, byte offset, line) of the record after it.

The formats (`csv/source.py`, `jsonl/source.py`) only describe their columns and parse records from
decoded lines; streaming, resume, and converting values to the target's column types live here.
"""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Generator, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Self

from typing_extensions import override

from schemas.api import SourceSpec
from schemas.messages import FILE_SOURCE_NO_CURSOR, FILE_SOURCE_NO_QUERY, at_line, file_changed, located
from service.connectors.base import (
    Capabilities,
    Chunk,
    Column,
    Position,
    RejectedRow,
    SelectItem,
    Source,
    TargetTypes,
)
from service.connectors.files.convert import BadRecord, BadValue, ChunkConverter
from service.connectors.files.options import FileOptions, LineReader, display_name, is_gzip, options_of, source_files
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.model import Endpoint
from service.sync.rejects import row_of

ESTIMATE_SAMPLE_BYTES = 1 << 20


class FileSource(Source):
    """Base of the CSV and JSON Lines sources; subclasses set `suffix`, `from_text` and the two hooks."""

    capabilities = Capabilities()
    suffix = ""
    from_text = True
    """Whether values arrive as text (CSV) rather than JSON values (JSON Lines)."""

    def __init__(self, endpoint: Endpoint, spec: SourceSpec, connect_timeout: float) -> None:  # noqa: ARG002 (nothing to connect to)
        if spec.query is not None:
            raise ConfigInvalid(FILE_SOURCE_NO_QUERY)
        if spec.cursor_column is not None:
            raise ConfigInvalid(FILE_SOURCE_NO_CURSOR)
        self.options: FileOptions = options_of(endpoint, self.suffix)
        self._spec = spec
        self.files: list[Path] = []
        self.columns: list[Column] = []
        self._cursor: tuple[int, LineReader | None] = (0, None)
        self._tolerant = False

    def tolerate_bad_rows(self) -> None:
        """A record whose values do not convert is set aside on the chunk (`errorLimit`), not fatal."""
        self._tolerant = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        reader = self._cursor[1]
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

    @override
    async def start(self, high_water_mark: Any | None) -> Position:
        return {"file": 0, "offset": 0, "line": 0}

    async def estimate(self, position: Position) -> int | None:
        return await asyncio.to_thread(self._estimate, position)

    def _estimate(self, position: Position) -> int | None:
        """Rows left, from the remaining bytes and the line length of a sample; None for gzip."""
        remaining = self.files[int(position.get("file", 0)):]
        if not remaining or any(is_gzip(self.options, f) for f in remaining):
            return None if remaining else 0
        size = sum(map(self._size, remaining)) - int(position.get("offset", 0))
        with self.options.files.open(remaining[0]) as sample_file:
            sample = sample_file.read(ESTIMATE_SAMPLE_BYTES)
        lines = sample.count(b"\n") or 1
        return max(0, round(size * lines / max(len(sample), 1)) - (1 if self.options.header else 0))

    def _size(self, path: Path) -> int:
        with self.options.files.open(path) as file:
            return os.fstat(file.fileno()).st_size

    @override
    def high_water_mark(self, position: Position, previous: Any | None) -> Any | None:
        return None

    def _records(self, position: Position) -> Generator[list[Any]]:
        index, offset = int(position.get("file", 0)), int(position.get("offset", 0))
        line, expected = int(position.get("line", 0)), position.get("name")
        moved = index < len(self.files) and display_name(self.options, self.files[index]) != expected
        if expected is not None and moved:
            raise SourceFailed(file_changed(expected))
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

    @property
    def null_text(self) -> str | None:
        """The field text that stands for NULL when the chunk is converted (None: parse already did)."""
        return None

    def _read_chunk(
        self, records: Generator[list[Any]], size: int, convert: ChunkConverter
    ) -> tuple[list[tuple[Any, ...]], list[RejectedRow], int, Position]:
        """Converted rows, the records set aside (tolerant only), how many records were read, the position."""
        start = self._position()
        raw = list(islice(records, size))
        read, typed = len(raw), [RejectedRow(r.row, r.reason, at_source=True) for r in raw if isinstance(r, BadRecord)]
        if typed:
            raw = [r for r in raw if not isinstance(r, BadRecord)]
        try:
            return convert(raw), typed, read, self._position()
        except BadValue as bad:
            if not self._tolerant:
                raise SourceFailed(located(bad.reason, self._locate(start, bad.row))) from bad.__cause__
        end, reading = self._position(), self._cursor
        rows, rejected = [], typed
        for index, record in enumerate(raw):  # only a chunk with a bad value is converted record by record
            try:
                rows.extend(convert([record]))
            except BadValue as bad:
                where = self._locate(start, index)
                self._cursor = reading  # locating read the chunk again with a reader of its own
                rejected.append(RejectedRow(row_of([c.name for c in self.columns], record),
                                            located(bad.reason, where), at_source=True))
        return rows, rejected, read, end

    def _locate(self, start: Position, row: int) -> str:
        """File and line of the chunk's `row`-th record, found by reading the chunk again (errors only)."""
        records = self._records(start)
        try:
            for _ in islice(records, row + 1):
                pass
            _, reader = self._cursor
            return at_line(display_name(self.options, reader.path), reader.line) if reader else "?"
        finally:
            records.close()

    @override
    async def chunks(
        self, plan: list[SelectItem], target_types: TargetTypes, position: Position, *, size: int, raw: bool
    ) -> AsyncIterator[Chunk]:
        convert = ChunkConverter(self.columns, plan, target_types, from_text=self.from_text, null_text=self.null_text)
        columns = [item.target for item in plan]
        records = self._records(position)
        try:
            while True:
                rows, rejected, read, position = await asyncio.to_thread(self._read_chunk, records, size, convert)
                if read:
                    yield Chunk(number=0, position=position, columns=columns, rows=rows, rejected=rejected)
                if read < size:
                    break
        finally:
            with contextlib.suppress(ValueError):  # still running in a worker thread after a cancel
                records.close()

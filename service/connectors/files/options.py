"""Local files as a system: the options of a file connection, which files a batch's `table` names, and
reading them as decoded lines whose byte offsets are known, so a resumed run seeks instead of re-reading.

Shared by the CSV and JSON Lines sources and targets (`files/source.py`, `files/target.py`). Lines are
split on `\\n` in bytes before decoding, which is sound for UTF-8 and GBK (neither puts 0x0A inside a
multi-byte character); UTF-16/32 are refused for that reason.
"""

import codecs
import glob
import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from schemas.messages import (
    FILE_COLUMNS_SHAPE,
    FOLDER_NEEDS_TABLE,
    SINGLE_CHARACTERS,
    at_line,
    column_kind_invalid,
    compression_unsupported,
    encoding_not_utf8_compatible,
    encoding_unsupported,
    file_io_failed,
    file_read_failed,
    file_undecodable,
    file_unreadable,
    path_missing,
)
from service.connectors.base import KINDS, Column
from service.connectors.errors import failed
from service.connectors.json_records import RECORD_TYPES
from service.security.files import FilePolicy
from service.sync.errors import ConfigInvalid, Side, SourceFailed, SyncError, TableMissing
from service.sync.model import Endpoint

BOM = codecs.BOM_UTF8
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class FileOptions:
    """`params` of a csv/jsonl connection, validated once (docs/spec.md §3)."""

    path: Path
    """The connection's file, glob or folder, resolved by the policy when the connection is opened."""
    suffix: str
    files: FilePolicy
    """The policy every file is opened through (`open_read`, the target's writes)."""
    encoding: str = "utf-8"
    compression: str | None = None
    header: bool = True
    delimiter: str = ","
    quote: str = '"'
    null_value: str = ""
    columns: tuple[tuple[str, str | None], ...] | None = None
    """Declared columns as (name, canonical kind or None)."""

    @property
    def bom(self) -> bool:
        return self.encoding == "utf-8-sig"

    @property
    def text_encoding(self) -> str:
        """The codec that decodes a line once a leading BOM has been dealt with."""
        return "utf-8" if self.bom else self.encoding


def _columns(raw: Any) -> tuple[tuple[str, str | None], ...] | None:
    """`params.columns`: a list of names, of `{name, kind}` objects, or a `{name: kind}` object."""
    if raw is None:
        return None
    items: list[tuple[Any, Any]] = []
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        for column in raw:
            if isinstance(column, dict):
                items.append((column.get("name"), column.get("kind") or column.get("type")))
            else:
                items.append((column, None))
    if not items or any(not isinstance(n, str) or not n for n, _ in items):
        raise ConfigInvalid(FILE_COLUMNS_SHAPE)
    for name, kind in items:
        if kind is not None and kind not in KINDS:
            raise ConfigInvalid(column_kind_invalid(name, kind))
    return tuple(items)


def declared_path(endpoint: Endpoint) -> str | None:
    """The file, glob or folder a csv/jsonl connection names (`params.path`, else its url)."""
    raw_path = (endpoint.params or {}).get("path") or endpoint.url
    if not isinstance(raw_path, str) or not raw_path:
        return None
    return raw_path.removeprefix("file://")


def declared_paths(endpoint: Endpoint) -> list[str]:
    """What the file policy must allow before a csv/jsonl connection is stored (registry hook);
    a connection without a path is refused like one outside the roots."""
    return [declared_path(endpoint) or ""]


def options_of(endpoint: Endpoint, suffix: str) -> FileOptions:
    params = endpoint.params or {}
    raw_path = declared_path(endpoint)
    if raw_path is None:
        raise ConfigInvalid(path_missing(suffix))
    encoding = str(params.get("encoding") or "utf-8").strip()
    try:
        name = codecs.lookup(encoding).name
    except LookupError as exc:
        raise ConfigInvalid(encoding_unsupported(encoding)) from exc
    if name.startswith(("utf-16", "utf-32")):
        raise ConfigInvalid(encoding_not_utf8_compatible(encoding))
    compression = params.get("compression")
    if compression not in (None, "gzip", "none"):
        raise ConfigInvalid(compression_unsupported(compression))
    delimiter, quote = str(params.get("delimiter", ",")), str(params.get("quote", '"'))
    if len(delimiter) != 1 or len(quote) != 1:
        raise ConfigInvalid(SINGLE_CHARACTERS)
    null_value = params.get("nullValue", "")
    return FileOptions(
        path=endpoint.policy.files.resolve(raw_path),
        suffix=suffix,
        files=endpoint.policy.files,
        encoding=name,
        compression=None if compression == "none" else compression,
        header=bool(params.get("header", True)),
        delimiter=delimiter,
        quote=quote,
        null_value="" if null_value is None else str(null_value),
        columns=_columns(params.get("columns")),
    )


def is_gzip(options: FileOptions, path: Path) -> bool:
    return options.compression == "gzip" or path.name.endswith(".gz")


def source_files(options: FileOptions, table: str | None) -> list[Path]:
    """The files a source reads, sorted: the file at `path`; files matching `path` as a glob; or in a
    folder, `<table>.<suffix>[.gz]` (a `table` with glob characters matches several)."""
    path, label = options.path, table or options.path.name
    if _GLOB_CHARS & set(str(path)):
        found = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
    elif path.is_file():
        return [path]
    elif path.is_dir():
        if table is None:
            raise ConfigInvalid(FOLDER_NEEDS_TABLE)
        pattern = table if _GLOB_CHARS & set(table) else glob.escape(table)
        found = sorted(
            Path(p) for ext in (options.suffix, options.suffix + ".gz")
            for p in glob.glob(str(path / f"{pattern}.{ext}")) if Path(p).is_file()
        )
        label = table
    else:
        found = []
    if not found:
        raise TableMissing(label, "source")
    return found


def display_name(options: FileOptions, path: Path) -> str:
    """A file's name relative to the connection's folder: what error messages show."""
    base = options.path if options.path.is_dir() else path.parent
    try:
        return str(path.relative_to(base))
    except ValueError:
        return path.name


def open_read(options: FileOptions, path: Path, offset: int) -> tuple[IO[bytes], gzip.GzipFile | IO[bytes]]:
    """The file through the policy (resolved again, no symlink followed out of the roots), and its
    decompressed bytes positioned at `offset` (gzip seeks by decompressing up to it); close both."""
    file = options.files.open(path, "rb")
    raw: gzip.GzipFile | IO[bytes] = gzip.GzipFile(fileobj=file, mode="rb") if is_gzip(options, path) else file
    try:
        if offset:
            raw.seek(offset)
    except (OSError, EOFError) as exc:
        raw.close()
        file.close()
        raise SourceFailed(file_read_failed(display_name(options, path)), detail=type(exc).__name__) from exc
    return file, raw


class LineReader:
    """Decoded lines of one file from a byte offset, keeping `offset` (bytes after the last line handed
    out) and `line` (its 1-based number) current, so a record boundary is a resume position."""

    def __init__(self, options: FileOptions, path: Path, offset: int = 0, line: int = 0) -> None:
        self.options, self.path = options, path
        self.offset, self.line = offset, line
        self._raw, self._file = open_read(options, path, offset)

    def close(self) -> None:
        self._file.close()
        self._raw.close()

    def raw_lines(self) -> Iterator[bytes]:
        """Undecoded lines (a leading UTF-8 BOM removed), keeping `offset` and `line` current."""
        strip_bom = self.offset == 0 and self.options.encoding in ("utf-8", "utf-8-sig")
        try:
            for raw in self._file:
                self.offset += len(raw)
                self.line += 1
                if strip_bom:
                    strip_bom = False
                    raw = raw.removeprefix(BOM)
                yield raw
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise SourceFailed(
                file_read_failed(at_line(display_name(self.options, self.path), self.line)), detail=type(exc).__name__
            ) from exc

    def undecodable(self, line: int) -> SourceFailed:
        where = at_line(display_name(self.options, self.path), line)
        return SourceFailed(file_undecodable(where, self.options.encoding))

    def __iter__(self) -> Iterator[str]:
        encoding = self.options.text_encoding
        for raw in self.raw_lines():
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise self.undecodable(self.line) from exc


def io_failed(side: Side, path: Path, exc: OSError) -> SyncError:
    """An OS error as a terminal error naming the file (never a full path outside the connection)."""
    return failed(side, file_io_failed(path.name), detail=exc.strerror or type(exc).__name__)


def check_path(endpoint: Endpoint, suffix: str) -> None:
    """The connection test: the file, glob or folder exists and is readable; a folder is writable too."""
    path = options_of(endpoint, suffix).path
    try:
        _check_existing(path)
    except OSError as exc:  # a name too long, a folder that vanished: the file's problem, never a 500/503
        raise io_failed("source", path, exc) from exc


def _check_existing(path: Path) -> None:
    if _GLOB_CHARS & set(str(path)):
        if not glob.glob(str(path)):
            raise TableMissing(str(path.name), "source")
        return
    if not path.exists():
        if path.parent.is_dir() and os.access(path.parent, os.W_OK):
            return  # a target file yet to be written
        raise TableMissing(path.name, "source")
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.W_OK | os.X_OK)):
        raise SourceFailed(file_unreadable(path.name))


def declared_columns(columns: tuple[tuple[str, str | None], ...]) -> list[Column]:
    """`params.columns` as Columns; a column declared without a kind is text of no known kind."""
    return [Column(name, RECORD_TYPES.spell(kind or "string"), kind) for name, kind in columns]

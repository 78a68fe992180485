"""A file target: each chunk becomes its own part file and the checkpoint a sidecar, both written
atomically (temp + fsync + rename); `finish` assembles header, old rows (append) and parts into a temp
file and renames it over the target file, so readers see the old file or the new one, never a mix.

The guarantee: a chunk's part is durable before its checkpoint names it, and a replayed chunk rewrites
the same part name, so no crash between the two duplicates rows. `finish` records the inode of the file
it is about to publish in the sidecar first; a retried finish that finds that inode in place only
cleans up, so a crash after the rename never appends the parts twice. Work files live in a hidden
`.batchsync/` folder beside the target file; a lock file there serialises finishes of runs that write
the same file.

Every file and folder is reached through the connection's file policy (resolved, confined to the roots,
no symlink followed): the target file, its temp file, parts, sidecar and lock. Files it creates are
0600; the published file keeps the mode of the one it replaces.
"""

import asyncio
import contextlib
import fcntl
import gzip
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, Self

from typing_extensions import override

from schemas.api import TargetSpec, WriteMode
from schemas.messages import file_unencodable
from service.connectors.base import Capabilities, Checkpoint, Chunk, Column, Target
from service.connectors.files.options import BOM, FileOptions, io_failed, is_gzip, options_of
from service.connectors.json_records import RECORD_TYPES
from service.security.files import FilePolicy
from service.sync.errors import TableMissing, TargetFailed
from service.sync.model import Endpoint

WORK_DIR = ".batchsync"
SIDECAR = "checkpoint.json"


def atomic_write(files: FilePolicy, path: Path, data: bytes) -> None:
    """Write `path` so that it holds the old bytes or all of `data`, never part of it."""
    temp = path.with_name(path.name + ".tmp")
    try:
        with files.create(temp) as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        files.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk must not keep the half-written temp file too
            files.unlink(temp)
        raise
    files.fsync_dir(path.parent)


class FileTarget(Target):
    """Base of the CSV and JSON Lines targets; subclasses set `suffix` and the schema/encoding hooks."""

    capabilities = Capabilities(transactional_checkpoint=True, types=RECORD_TYPES)
    suffix = ""

    def __init__(self, endpoint: Endpoint, spec: TargetSpec, connect_timeout: float) -> None:  # noqa: ARG002 (nothing to connect to)
        self.options: FileOptions = options_of(endpoint, self.suffix)
        self.files = self.options.files
        self._spec = spec
        self.path = self.files.resolve(self._final_path())
        self.columns: list[Column] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        return None

    def _final_path(self) -> Path:
        """`<folder>/<table>.<suffix>[.gz]` in a folder (an existing file of either name wins), else `path`."""
        folder = self.options.path
        if not folder.is_dir():
            return folder
        plain, packed = folder / f"{self._spec.table}.{self.suffix}", folder / f"{self._spec.table}.{self.suffix}.gz"
        if self.options.compression == "gzip" or (packed.exists() and not plain.exists()):
            return packed
        return plain

    def read_schema(self) -> list[Column]:
        """The columns of the existing target file (header, first record or `params.columns`)."""
        raise NotImplementedError

    def header(self, names: list[str]) -> bytes:
        """Bytes written before the first row of a new file (CSV's header line)."""
        raise NotImplementedError

    def encode(self, names: list[str], columns: list[str], rows: list[tuple[Any, ...]]) -> bytes:
        """Rows (in `columns` order) as file bytes in `names` order, in the target encoding."""
        raise NotImplementedError

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    async def describe(self) -> list[Column]:
        if not self.path.is_file():
            raise TableMissing(self._spec.table, "target")
        try:
            self.columns = await asyncio.to_thread(self.read_schema)
        except OSError as exc:
            raise io_failed("target", self.path, exc) from exc
        return self.columns

    async def create_table(self, columns: list[Column]) -> None:
        """Create the missing target file (a CSV header, or nothing) when the batch opts in (`target.create`)."""
        self.columns = columns
        try:
            await asyncio.to_thread(self._create)
        except OSError as exc:
            raise io_failed("target", self.path, exc) from exc

    def _create(self) -> None:
        head = (BOM if self.options.bom else b"") + self.header(self.names)
        atomic_write(self.files, self.path, gzip.compress(head) if is_gzip(self.options, self.path) and head else head)

    def _work(self, key: str) -> Path:
        return self.path.parent / WORK_DIR / f"{self.path.name}.{key}"

    def _sidecar(self, key: str) -> dict[str, Any] | None:
        try:
            with self.files.open(self._work(key) / SIDECAR) as sidecar:
                state: dict[str, Any] = json.loads(sidecar.read().decode("utf-8"))
                return state
        except FileNotFoundError:
            return None

    async def read_checkpoint(self, key: str) -> Checkpoint | None:
        state = await asyncio.to_thread(self._sidecar, key)
        if state is None:
            return None
        return Checkpoint(chunk=state["chunk"], position=state["position"], records_read=state["records_read"],
                          records_written=state["records_written"], extra=state.get("extra") or {})

    @override
    async def prepare(self, key: str, columns: list[str]) -> None:
        try:
            await asyncio.to_thread(self.files.mkdirs, self._work(key))
        except OSError as exc:
            raise io_failed("target", self.path, exc) from exc

    async def write(self, key: str, chunk: Chunk, previous: Checkpoint) -> Checkpoint | None:
        try:
            return await asyncio.to_thread(self._write, key, chunk, previous)
        except OSError as exc:
            await asyncio.to_thread(self._clean_up_failed, key)
            raise io_failed("target", self.path, exc) from exc

    def _write(self, key: str, chunk: Chunk, previous: Checkpoint) -> Checkpoint | None:
        saved = self._sidecar(key)
        if saved is not None and saved["chunk"] >= chunk.number:
            return None
        rows = chunk.rows or []
        work = self._work(key)
        atomic_write(self.files, work / f"part-{chunk.number:08d}", self.encode(self.names, chunk.columns, rows))
        checkpoint = previous.after(chunk, len(rows), len(rows))
        atomic_write(self.files, work / SIDECAR, json.dumps(asdict(checkpoint)).encode("utf-8"))
        return checkpoint

    @override
    async def finish(self, key: str, columns: list[str], last: Checkpoint) -> None:
        try:
            await asyncio.to_thread(self._finish, key, last)
        except OSError as exc:
            await asyncio.to_thread(self._clean_up_failed, key)
            raise io_failed("target", self.path, exc) from exc

    def _clean_up_failed(self, key: str) -> None:
        """After a write or publish failed on the file system (a full disk, a file size limit): remove the
        run's temp file, parts and sidecar, so nothing half-written stays behind and a retry starts the
        file over. Kept when the sidecar says the file was already published: that marker is what stops a
        retried finish from appending the parts twice."""
        with contextlib.suppress(OSError):
            self.files.unlink(self._temp(key))
            state = self._sidecar(key)
            if state is None or state.get("published") is None:
                self.files.remove_tree(self._work(key))

    def _temp(self, key: str) -> Path:
        """The file `finish` assembles before renaming it over the target file."""
        return self.path.with_name(f".{self.path.name}.{key}.tmp")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_dir = self.files.mkdirs(self.path.parent / WORK_DIR)
        with self.files.open(lock_dir / f"{self.path.name}.lock", "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _finish(self, key: str, last: Checkpoint) -> None:
        work = self._work(key)
        with self._locked():
            state = self._sidecar(key) or {"chunk": 0}
            published = state.get("published")
            current = self.files.stat(self.path)
            already = published is not None and current is not None and current.st_ino == published
            nothing = not state["chunk"] and self._spec.mode is WriteMode.APPEND and current is not None
            if not (already or nothing):
                temp = self._temp(key)
                state["published"] = self._assemble(temp, work, int(state["chunk"]))
                self.files.mkdirs(work)
                atomic_write(self.files, work / SIDECAR, json.dumps(state).encode("utf-8"))
                self.files.replace(temp, self.path)
                self.files.fsync_dir(self.path.parent)
            self._keep_only_finished(work, last)

    def _keep_only_finished(self, work: Path, last: Checkpoint) -> None:
        """Drop the parts, keep a finished sidecar: a re-run of this chain then writes nothing again."""
        real = self.files.mkdirs(work)
        for part in real.glob("part-*"):
            self.files.unlink(part)
        atomic_write(self.files, work / SIDECAR, json.dumps(asdict(last.as_finished())).encode("utf-8"))

    def _assemble(self, temp: Path, work: Path, chunks: int) -> int:
        """Old rows (append), a header when the file starts afresh, then parts 1..chunks, fsynced; the
        inode of the assembled temp file."""
        current = self.files.stat(self.path)
        keep = self._spec.mode is WriteMode.APPEND and current is not None and current.st_size > 0
        with self.files.create(temp) as raw:
            if keep:
                self._copy_old(raw)
            out: gzip.GzipFile | IO[bytes] = (
                gzip.GzipFile(fileobj=raw, mode="wb") if is_gzip(self.options, self.path) else raw)
            try:
                if not keep:
                    out.write((BOM if self.options.bom else b"") + self.header(self.names))
                for number in range(1, chunks + 1):
                    with self.files.open(work / f"part-{number:08d}") as part:
                        shutil.copyfileobj(part, out, 1 << 20)
            finally:
                if out is not raw:
                    out.close()
            raw.flush()
            os.fsync(raw.fileno())
            return os.fstat(raw.fileno()).st_ino

    def _copy_old(self, raw: IO[bytes]) -> None:
        """The current file's bytes (append), with a line end added after a last line that lacks one."""
        with self.files.open(self.path) as old:
            shutil.copyfileobj(old, raw, 1 << 20)
            if not is_gzip(self.options, self.path):
                old.seek(-1, os.SEEK_END)
                if old.read(1) != b"\n":
                    raw.write(b"\n")

    async def abandon(self, key: str) -> None:
        def drop() -> None:
            self.files.remove_tree(self._work(key))
            self.files.unlink(self._temp(key))
        await asyncio.to_thread(drop)


def encoded(options: FileOptions, path: Path, text: str) -> bytes:
    """`text` in the target encoding; a character it cannot carry fails the run naming file and line."""
    try:
        return text.encode(options.text_encoding)
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        raise TargetFailed(file_unencodable(options.encoding, path.name, line)) from exc

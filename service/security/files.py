"""Where file connections (csv, jsonl, sqlite) may read and write: docs/spec.md §7 "Files".

A path is resolved (symlinks, `..`) and must then lie inside one of `BATCHSYNC_FILE_ROOTS`. The
service's own state directory (its keys, database and broker log) and the kernel's pseudo file
systems are refused whatever the roots say; only the state directory's `files/` folder, which
`batchsync up` uses as its default root, is open. Connectors ask this policy when a connection is
created and again for every file they open, so a symlink planted later is caught too.

Opening is confined as well as checked: after resolving, the real path is walked from `/` one
directory at a time with `O_NOFOLLOW`, so a symlink swapped in between the check and the open is
refused instead of followed. Files the policy creates are 0600 and directories 0700; a file that
replaces another keeps the mode of the one it replaces.
"""

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from schemas.messages import PATH_REFUSED
from service.sync.errors import AccessDenied

NEVER_ALLOWED = (Path("/proc"), Path("/sys"), Path("/dev"))
STATE_FILES_FOLDER = "files"
"""The one folder inside the state directory that may be a file root (`up`'s default)."""
FILE_MODE = 0o600
DIR_MODE = 0o700

OpenMode = Literal["rb", "wb", "xb", "ab"]
_FLAGS: dict[str, int] = {
    "rb": os.O_RDONLY | os.O_NONBLOCK,
    "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "xb": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
}
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefused(AccessDenied):
    reason = PATH_REFUSED


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _symlink_refused(name: str, dir_fd: int, exc: OSError) -> PathRefused | None:
    """ELOOP/ENOTDIR on an O_NOFOLLOW open: a symlink appeared where the resolved path had none."""
    if exc.errno == errno.ELOOP:
        return PathRefused(detail="symlink")
    if exc.errno == errno.ENOTDIR:
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                return PathRefused(detail="symlink")
    return None


def _open_at(name: str, flags: int, dir_fd: int, mode: int = FILE_MODE) -> int:
    try:
        return os.open(name, flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        refused = _symlink_refused(name, dir_fd, exc)
        if refused is None:
            raise
        raise refused from exc


def _open_dir(real: Path, *, create: bool) -> int:
    """An O_PATH descriptor of the resolved directory `real`, walked from `/` without following any
    symlink; missing directories are created (0700) when `create`."""
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in real.parts[1:]:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, DIR_MODE, dir_fd=fd)
            inner = _open_at(part, _DIR_FLAGS, fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _parent(real: Path, *, create: bool = False) -> Iterator[int]:
    fd = _open_dir(real.parent, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FilePolicy:
    roots: tuple[Path, ...] = ()
    """Resolved directories; empty means every file connection is refused."""
    state_dir: Path | None = None
    """The resolved state directory, refused except for its `files/` folder."""

    @classmethod
    def of(cls, roots: tuple[Path, ...], state_dir: Path | None) -> "FilePolicy":
        return cls(roots=tuple(_real(root.expanduser()) for root in roots),
                   state_dir=_real(state_dir) if state_dir is not None else None)

    def resolve(self, path: str | Path) -> Path:
        """The real, absolute path of `path` if a file connection may use it, else PathRefused.

        A relative path is taken relative to the first root. Only the directory part of a glob is
        resolved here; each file the glob matches must be resolved again before it is opened.
        """
        text = str(path)
        if not text or "\x00" in text:
            raise PathRefused(detail="empty path" if not text else "NUL in path")
        if not self.roots:
            raise PathRefused(detail="BATCHSYNC_FILE_ROOTS is not set")
        candidate = Path(text).expanduser() if text.startswith("~") else Path(text)
        if not candidate.is_absolute():
            candidate = self.roots[0] / candidate
        if any(_inside(Path(os.path.normpath(candidate)), never) for never in NEVER_ALLOWED):
            raise PathRefused()  # before resolving: /proc's links are not to be followed, even to check them
        try:
            real = _real(candidate)
        except OSError as exc:
            raise PathRefused(detail=exc.strerror) from exc
        if not self.allows(real):
            raise PathRefused()
        return real

    def allows(self, real: Path) -> bool:
        """Whether an already resolved path lies inside a root and outside every forbidden place."""
        if any(_inside(real, never) for never in NEVER_ALLOWED):
            return False
        if self.state_dir is not None and _inside(real, self.state_dir) and not _inside(
                real, self.state_dir / STATE_FILES_FOLDER):
            return False
        return any(_inside(real, root) for root in self.roots)

    # Confined operations: each resolves its path again and walks to it without following symlinks.

    def open(self, path: str | Path, mode: OpenMode = "rb") -> IO[bytes]:
        """`path` opened for bytes: read (a regular file only), write, exclusive create or append.

        A created file is 0600; the final component is opened with O_NOFOLLOW.
        """
        real = self.resolve(path)
        with _parent(real) as parent:
            fd = _open_at(real.name, _FLAGS[mode] | os.O_NOFOLLOW | os.O_CLOEXEC, parent)
        try:
            if mode == "rb":
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise PathRefused(detail="not a regular file")
                os.set_blocking(fd, True)
            return os.fdopen(fd, mode)
        except BaseException:
            os.close(fd)
            raise

    def create(self, path: str | Path) -> IO[bytes]:
        """A new, empty 0600 file at `path` for writing, replacing a leftover (never writing through it)."""
        self.unlink(path)
        return self.open(path, "xb")

    def entry(self, path: str | Path) -> Path:
        """`path` with its folder resolved but its last component kept: the name a rename, unlink or
        status acts on itself (a symlink there is the entry, not what it points to)."""
        name = Path(str(path)).name
        if name in ("", ".", ".."):
            raise PathRefused(detail="not a file name")
        real = self.resolve(Path(str(path)).parent) / name
        if not self.allows(real):
            raise PathRefused()
        return real

    def stat(self, path: str | Path) -> os.stat_result | None:
        """The status of the entry at `path` (a symlink is not followed), or None when there is none."""
        real = self.entry(path)
        try:
            with _parent(real) as parent:
                return os.stat(real.name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def mkdirs(self, path: str | Path) -> Path:
        """Create the directory `path` and its missing parents (0700); its real path."""
        real = self.resolve(path)
        os.close(_open_dir(real, create=True))
        return real

    def replace(self, source: str | Path, target: str | Path) -> None:
        """Rename `source` over `target` atomically; it keeps the mode of the file it replaces."""
        real_source, real_target = self.entry(source), self.entry(target)
        with _parent(real_source) as source_dir, _parent(real_target) as target_dir:
            with contextlib.suppress(FileNotFoundError):
                old = os.stat(real_target.name, dir_fd=target_dir, follow_symlinks=False)
                if stat.S_ISREG(old.st_mode):
                    fd = _open_at(real_source.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, source_dir)
                    try:
                        os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)
                    finally:
                        os.close(fd)
            os.replace(real_source.name, real_target.name, src_dir_fd=source_dir, dst_dir_fd=target_dir)

    def unlink(self, path: str | Path) -> None:
        """Remove the file (or a symlink itself) at `path` if it exists."""
        real = self.entry(path)
        with contextlib.suppress(FileNotFoundError), _parent(real) as parent:
            os.unlink(real.name, dir_fd=parent)

    def remove_tree(self, path: str | Path) -> None:
        """Remove the directory `path` and everything in it, never following a symlink out of it."""
        real = self.entry(path)
        with contextlib.suppress(FileNotFoundError), _parent(real) as parent:
            shutil.rmtree(real.name, ignore_errors=True, dir_fd=parent)

    def fsync_dir(self, path: str | Path) -> None:
        """Make a rename or creation in the directory `path` durable."""
        real = self.resolve(path)
        with _parent(real) as parent:
            fd = _open_at(real.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, parent)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

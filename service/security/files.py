"""Where file connections (csv, jsonl, sqlite) may read and write: SPEC §7 "Files".

A path is resolved (symlinks, `..`) and must then lie inside one of `BATCHSYNC_FILE_ROOTS`. The
service's own state directory (its keys, database and broker log) and the kernel's pseudo file
systems are refused whatever the roots say; only the state directory's `files/` folder, which
`batchsync up` uses as its default root, is open. Connectors ask this policy when a connection is
created and again for every file they open, so a symlink planted later is caught too.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from service.sync.errors import AccessDenied

PATH_REFUSED = "文件路径不在允许的目录中"
NEVER_ALLOWED = (Path("/proc"), Path("/sys"), Path("/dev"))
STATE_FILES_FOLDER = "files"
"""The one folder inside the state directory that may be a file root (`up`'s default)."""


class PathRefused(AccessDenied):
    reason = PATH_REFUSED


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


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
        real = _real(candidate)
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

"""Keys kept in files of the data directory by `batchsync up` (the dev JWT secret, the secret key)."""

import contextlib
import os
import secrets
from pathlib import Path

from pydantic import SecretStr


def key_file(path: Path, *, create: bool) -> SecretStr | None:
    """A random key kept in `path` (mode 0600, created once, never overwritten), or None when absent."""
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
    if not path.exists():
        return None
    return SecretStr(path.read_text().strip())

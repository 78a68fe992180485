"""The access policy for tests that build Endpoints by hand: files confined to the given folders.

An Endpoint built without a policy gets the strictest one (no file roots), so every file test names
the folders it may use, as production's BATCHSYNC_FILE_ROOTS would. Without folders it is the temp
folder, where pytest's tmp_path lives: the same root tests/conftest.py gives the whole suite.
"""

import tempfile
from pathlib import Path

from service.security.files import FilePolicy
from service.security.policy import AccessPolicy


def policy_for(*roots: Path | str) -> AccessPolicy:
    folders = tuple(Path(root) for root in roots) or (Path(tempfile.gettempdir()),)
    return AccessPolicy(files=FilePolicy.of(folders, None))

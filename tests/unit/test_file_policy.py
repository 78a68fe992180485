"""The file policy on real files in tmp_path: what it resolves and refuses, and the confined operations
(no symlink followed, even one swapped in after the check; 0600 files, 0700 folders, modes kept)."""

import os
import stat
from pathlib import Path

import pytest

from schemas.events import ErrorCode
from schemas.messages import PATH_REFUSED
from service.config import Settings
from service.embedded import with_default_file_root
from service.security.files import FilePolicy, PathRefused
from service.security.policy import AccessPolicy


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("TOP-SECRET")
    return folder


def refused(policy: FilePolicy, path: str | Path) -> bool:
    try:
        policy.resolve(path)
    except PathRefused as error:
        assert error.reason == PATH_REFUSED and error.code is ErrorCode.ACCESS_DENIED
        return True
    return False


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_paths_inside_a_root_resolve_to_their_real_path(root: Path):
    (root / "real").mkdir()
    (root / "alias").symlink_to(root / "real")
    policy = FilePolicy.of((root,), None)
    assert policy.resolve(root / "a.csv") == root / "a.csv"
    assert policy.resolve("sub/a.csv") == root / "sub" / "a.csv", "relative to the first root"
    assert policy.resolve(root / "alias" / "a.csv") == root / "real" / "a.csv"
    assert policy.resolve(root / "x" / ".." / "a.csv") == root / "a.csv"


def test_escapes_are_refused(root: Path, outside: Path):
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "door").symlink_to(outside)
    policy = FilePolicy.of((root,), None)
    for path in (outside / "secret.txt", root / ".." / "outside" / "secret.txt", "../outside/secret.txt",
                 root / "link.txt", root / "door", root / "door" / "secret.txt", "/etc/passwd", "",
                 f"{root}/a\x00.csv", root.parent):
        assert refused(policy, path), path


def test_kernel_file_systems_are_refused_whatever_the_roots():
    policy = FilePolicy.of((Path("/"),), None)
    for path in ("/proc/self/environ", "/proc/1/root/etc/passwd", "/sys/kernel/notes", "/dev/zero", "/dev/shm/x"):
        assert refused(policy, path), path
    assert not refused(policy, "/etc/hostname")


def test_the_state_directory_is_refused_except_its_files_folder(tmp_path: Path):
    state = tmp_path / "state"
    (state / "files").mkdir(parents=True)
    (state / "jwt_secret").write_text("s")
    policy = FilePolicy.of((tmp_path,), state)
    for path in (state / "jwt_secret", state / "secret_key", state, state / "pg" / "postgresql.conf",
                 state / "files" / ".." / "jwt_secret"):
        assert refused(policy, path), path
    assert policy.resolve(state / "files" / "orders.csv") == state / "files" / "orders.csv"


def test_no_roots_refuses_everything(tmp_path: Path):
    assert refused(FilePolicy(), tmp_path / "a.csv")
    assert refused(AccessPolicy().files, tmp_path / "a.csv"), "the default policy is the strictest"


def test_up_defaults_its_root_to_the_state_files_folder(tmp_path: Path):
    state = tmp_path / "state"
    settings = with_default_file_root(Settings(_env_file=None, file_roots=None, data_dir=state))
    assert settings.file_root_paths == ((state / "files").resolve(),)
    assert mode(state / "files") == 0o700
    policy = AccessPolicy.from_settings(settings).files
    assert policy.resolve("orders.csv") == (state / "files" / "orders.csv").resolve()
    assert refused(policy, state / "jwt_secret")
    configured = Settings(_env_file=None, file_roots=str(tmp_path), data_dir=state)
    assert with_default_file_root(configured) is configured


class Unchecked(FilePolicy):
    """A policy whose check passed before the path changed: resolving returns the path as it was."""

    def resolve(self, path: str | Path) -> Path:
        return Path(path)


def test_a_symlink_swapped_in_after_the_check_is_not_followed(root: Path, outside: Path):
    (root / "door").symlink_to(outside)
    (root / "link.txt").symlink_to(outside / "secret.txt")
    late = Unchecked(roots=(root,))
    for path in (root / "door" / "secret.txt", root / "link.txt"):
        with pytest.raises(PathRefused):
            late.open(path)
    with pytest.raises(PathRefused):
        late.open(root / "door" / "new.txt", "xb")
    with pytest.raises(PathRefused):
        late.mkdirs(root / "door" / "sub")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_reading_needs_a_regular_file(root: Path):
    os.mkfifo(root / "pipe")
    with pytest.raises(PathRefused):
        FilePolicy.of((root,), None).open(root / "pipe")


def test_created_files_are_private_and_a_replaced_file_keeps_its_mode(root: Path):
    policy = FilePolicy.of((root,), None)
    old_mask = os.umask(0)
    try:
        folder = policy.mkdirs(root / "a" / "b")
        with policy.create(folder / "new.tmp") as out:
            out.write(b"new")
        with policy.open(folder / "lock", "ab"):
            pass
    finally:
        os.umask(old_mask)
    assert (mode(root / "a"), mode(folder), mode(folder / "new.tmp"), mode(folder / "lock")) == (
        0o700, 0o700, 0o600, 0o600)

    (folder / "kept.csv").write_text("old")
    os.chmod(folder / "kept.csv", 0o640)
    policy.replace(folder / "new.tmp", folder / "kept.csv")
    assert (folder / "kept.csv").read_text() == "new" and mode(folder / "kept.csv") == 0o640

    with policy.create(folder / "fresh.tmp") as out:
        out.write(b"x")
    policy.replace(folder / "fresh.tmp", folder / "fresh.csv")
    assert mode(folder / "fresh.csv") == 0o600


def test_create_replaces_a_planted_link_instead_of_writing_through_it(root: Path, outside: Path):
    (root / "part.tmp").symlink_to(outside / "secret.txt")
    policy = FilePolicy.of((root,), None)
    with policy.create(root / "part.tmp") as out:
        out.write(b"chunk")
    assert (outside / "secret.txt").read_text() == "TOP-SECRET"
    assert not (root / "part.tmp").is_symlink() and (root / "part.tmp").read_bytes() == b"chunk"


def test_removing_never_reaches_through_a_link(root: Path, outside: Path):
    policy = FilePolicy.of((root,), None)
    work = policy.mkdirs(root / "work")
    (work / "part-1").symlink_to(outside / "secret.txt")
    (work / "escape").symlink_to(outside)
    policy.unlink(work / "part-1")
    assert not (work / "part-1").exists() and (outside / "secret.txt").exists()
    policy.remove_tree(work)
    assert not work.exists() and (outside / "secret.txt").read_text() == "TOP-SECRET"
    (root / "gone").symlink_to(outside)
    with pytest.raises(PathRefused):
        policy.remove_tree(root / "gone" / "anything")

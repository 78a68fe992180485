"""A file run that fails on a full disk cleans up (issue 11 item 2): no temp file, no part files, no
sidecar stay behind, and the target file keeps its old bytes under its real name.

The disk fills for real: the run executes in a child process with RLIMIT_FSIZE set (and SIGXFSZ ignored,
so a write past the limit fails with EFBIG as a full disk fails with ENOSPC), through the real engine.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OLD = b"id,name\n1,old\n"

CHILD = textwrap.dedent("""
    import asyncio, resource, signal, sys
    from pathlib import Path
    from schemas.api import SourceSpec
    from service.sync.errors import SyncError
    from service.sync.model import Endpoint
    from tests.contract.harness import spec_for, sync
    from tests.support.policy import policy_for

    folder, limit, chunk = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    source = (Endpoint(type="csv", params={"path": str(folder / "in")}, policy=policy_for(folder)),
              SourceSpec(table="orders"))
    target = Endpoint(type="csv", params={"path": str(folder / "out")}, policy=policy_for(folder))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        asyncio.run(sync(spec_for(source, target, "orders", mode=sys.argv[4], chunk_size=chunk)))
    except SyncError as exc:
        print("FAILED", exc.reason, exc.detail)
        sys.exit(3)
    print("DONE")
""")


def run_child(folder: Path, limit: int, chunk: int, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD, str(folder), str(limit), str(chunk), mode], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and p.name != "orders.csv" and not p.name.endswith(".lock"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    rows = "".join(f"{i},name {i} {'x' * 30}\n" for i in range(1, 10_001))
    (tmp_path / "in" / "orders.csv").write_text("id,name\n" + rows, encoding="utf-8")
    (tmp_path / "out" / "orders.csv").write_bytes(OLD)
    return tmp_path


@pytest.mark.parametrize("mode", ["append", "overwrite"])
@pytest.mark.parametrize(("limit", "chunk", "where"), [(100_000, 10_000, "part"), (200_000, 1_000, "publish")])
async def test_a_write_failure_leaves_no_work_files_and_the_old_file(folder: Path, mode: str, limit: int,
                                                                     chunk: int, where: str) -> None:
    """`part`: the first chunk's part file outgrows the limit; `publish`: every part fits, the assembled
    file (about 450 kB) does not."""
    done = run_child(folder, limit, chunk, mode)

    assert done.returncode == 3, (where, done.stdout, done.stderr)
    assert "FAILED" in done.stdout and "File too large" in done.stdout
    assert (folder / "out" / "orders.csv").read_bytes() == OLD
    assert leftovers(folder / "out") == []


async def test_the_failed_run_succeeds_once_there_is_room(folder: Path) -> None:
    """Nothing stale is picked up after the failure: the next run writes every row once."""
    assert run_child(folder, 200_000, 1_000, "append").returncode == 3
    done = run_child(folder, 10_000_000, 1_000, "append")

    assert done.returncode == 0, done.stderr
    lines = (folder / "out" / "orders.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 + 10_000 and lines[:2] == ["id,name", "1,old"]
    assert [name for name in leftovers(folder / "out") if not name.endswith("/checkpoint.json")] == []  # kept finished

"""A file source larger than memory would allow if it were not streamed: a few million rows written to
disk from a generator, synced to PostgreSQL by the engine in a child process whose peak RSS (VmHWM)
must stay flat, far below the file's size: CSV on the copy stream and as decoded rows, and JSON Lines."""

import asyncio
import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import PIPE

import asyncpg
import pytest

from tests.support.builders import unique

ROWS = {"csv": 3_000_000, "jsonl": 2_000_000}
PAD = "流" * 10 + "x" * 120
PEAK_LIMIT_MB = 150

CHILD = textwrap.dedent("""
    import asyncio, json, sys, uuid
    from schemas.api import SourceSpec, TargetSpec
    from service.connectors.registry import REGISTRY
    from service.sync.engine import execute
    from service.sync.model import Endpoint, RunSpec
    from tests.support.policy import policy_for

    class Quiet:
        async def on_start(self, *_): pass
        async def on_chunk(self, _): pass
        async def on_phase(self, _): pass
        def cancel_requested(self): return False

    kind, folder, dsn, table, extra = sys.argv[1:6]
    run, source = uuid.uuid4(), Endpoint(kind, params={"path": folder, **json.loads(extra)},
                                         policy=policy_for(folder))
    spec = RunSpec(run_id=run, checkpoint_key=run, batch_id=0, source_endpoint=source,
                   source=SourceSpec(table="big"), target_endpoint=Endpoint("postgresql", url=dsn),
                   target=TargetSpec(table=table), mapping=None, chunk_size=20000)
    result = asyncio.run(execute(spec, Quiet(), connectors=REGISTRY, connect_timeout=5))
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(result.records_written, int(peak.split()[1]) // 1024)
""")


def lines(kind: str) -> Iterator[str]:
    if kind == "csv":
        yield "id,payload\n"
    for i in range(1, ROWS[kind] + 1):
        text = f"{PAD}{i}"
        yield f"{i},{text}\n" if kind == "csv" else json.dumps({"id": i, "payload": text}, ensure_ascii=False) + "\n"


def write_file(path: Path, kind: str) -> int:
    with path.open("w", encoding="utf-8") as out:
        batch: list[str] = []
        for line in lines(kind):
            batch.append(line)
            if len(batch) == 100_000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
    return path.stat().st_size


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, float]]:
    """A folder holding the big file of a kind and its size in MB, written once per module: both CSV cases read
    the same file (they differ in how the engine reads it), so it is not written twice."""
    written: dict[str, tuple[Path, float]] = {}

    def folder(kind: str) -> tuple[Path, float]:
        if kind not in written:
            path = tmp_path_factory.mktemp(f"big_{kind}")
            written[kind] = path, write_file(path / f"big.{kind}", kind) / 2**20
        return written[kind]

    return folder


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "params"), [("csv", {}), ("csv", {"nullValue": "NULL"}), ("jsonl", {})],
                         ids=["csv-copy-stream", "csv-decoded-rows", "jsonl"])
async def test_a_multi_million_row_file_syncs_with_flat_memory(big_files, target_dsn: str, kind: str, params: dict):
    folder, size_mb = big_files(kind)
    table = unique("big")
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(f'CREATE UNLOGGED TABLE "{table}" (id bigint, payload text)')
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, kind, str(folder), target_dsn,
                                                     table, json.dumps(params), stdout=PIPE, stderr=PIPE)
        out, err = await asyncio.wait_for(child.communicate(), timeout=120)
        assert child.returncode == 0, err.decode()[-2000:]
        written, peak_mb = map(int, out.split())
        stored = await conn.fetchrow(f'SELECT count(*) AS n, sum(id) AS s, max(length(payload)) AS w FROM "{table}"')
    finally:
        await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        await conn.close()

    rows = ROWS[kind]
    print(f"{kind}: {size_mb:.0f} MB file, {rows:,} rows, child peak RSS {peak_mb} MB")
    assert written == rows and stored["n"] == rows and stored["s"] == rows * (rows + 1) // 2
    assert stored["w"] == len(PAD) + len(str(rows))
    assert size_mb > 3 * peak_mb
    assert peak_mb < PEAK_LIMIT_MB

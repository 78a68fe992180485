"""Files to files through the engine on real files: a CSV folder into a JSON Lines file resumed after a
crash with every row once, a cancelled overwrite that leaves the old file, and the refusals a file
source gives (cursor column, query)."""

import csv
import json
from pathlib import Path

import pytest

from schemas.api import SourceSpec
from service.sync.errors import ConfigInvalid, RunCancelled
from service.sync.model import Endpoint
from tests.contract.harness import Crash, Recorder, spec_for, sync
from tests.support.policy import policy_for


def write_csv(path: Path, rows: range) -> None:
    with path.open("w", encoding="gbk", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["编号", "城市", "金额"])
        writer.writerows([i, f"城市{i}", f"{i}.50"] for i in rows)


def csv_source(folder: Path, table: str = "orders") -> tuple[Endpoint, SourceSpec]:
    endpoint = Endpoint(type="csv", params={"path": str(folder), "encoding": "gbk"}, policy=policy_for())
    return endpoint, SourceSpec(table=table)


async def test_csv_into_jsonl_resumes_after_a_crash_with_every_row_once(tmp_path: Path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    write_csv(tmp_path / "in" / "orders.csv", range(1, 2501))
    (tmp_path / "out" / "orders.jsonl").write_text('{"编号": "0", "城市": "旧", "金额": "0"}\n', encoding="utf-8")
    target = Endpoint(type="jsonl", params={"path": str(tmp_path / "out")}, policy=policy_for())
    spec = spec_for(csv_source(tmp_path / "in"), target, "orders", chunk_size=1000)

    with pytest.raises(Crash):
        await sync(spec, Recorder(crash_after=2))
    assert (tmp_path / "out" / "orders.jsonl").read_text(encoding="utf-8").count("\n") == 1
    resumed = Recorder()
    result = await sync(spec, resumed)

    assert resumed.started[0][0] == 2 and [u.chunk for u in resumed.updates] == [3]
    assert result.records_written == 2500
    lines = (tmp_path / "out" / "orders.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["编号"] for r in records] == [str(i) for i in range(0, 2501)]
    assert records[-1] == {"编号": "2500", "城市": "城市2500", "金额": "2500.50"}


class CancelAfter(Recorder):
    def cancel_requested(self) -> bool:
        return len(self.updates) >= 1


async def test_a_cancelled_overwrite_leaves_the_old_file(tmp_path: Path):
    write_csv(tmp_path / "orders.csv", range(1, 3001))
    (tmp_path / "copy.csv").write_bytes("编号,城市,金额\n1,旧,0\n".encode("gbk"))
    target = Endpoint(type="csv", params={"path": str(tmp_path), "encoding": "gbk"}, policy=policy_for())

    with pytest.raises(RunCancelled):
        await sync(spec_for(csv_source(tmp_path), target, "copy", mode="overwrite", chunk_size=1000), CancelAfter())

    assert (tmp_path / "copy.csv").read_bytes() == "编号,城市,金额\n1,旧,0\n".encode("gbk")
    assert not list((tmp_path / ".batchsync").glob("copy.csv.*-*"))


async def test_file_sources_refuse_a_cursor_column_or_a_query(tmp_path: Path):
    write_csv(tmp_path / "orders.csv", range(1, 3))
    target = Endpoint(type="jsonl", params={"path": str(tmp_path)}, policy=policy_for())
    endpoint = csv_source(tmp_path)[0]
    with pytest.raises(ConfigInvalid) as error:
        await sync(spec_for((endpoint, SourceSpec(table="orders", cursor_column="id")), target, "orders"))
    assert error.value.reason == "文件源不支持增量同步（cursorColumn），每次同步读取全部文件"
    with pytest.raises(ConfigInvalid) as error:
        await sync(spec_for((endpoint, SourceSpec(query="SELECT 1")), target, "orders"))
    assert error.value.reason == "文件源不支持 query，请指定 table（文件名）"

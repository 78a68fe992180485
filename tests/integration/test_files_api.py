"""csv and jsonl connections through the API on real files: the live connection test (file, folder,
glob; missing), and batches the file kinds cannot serve refused with 400 naming why."""

from pathlib import Path

import pytest

from tests.support.api import api_client, api_settings, asyncpg_url, batch_body, create_connection


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        yield client


async def live_test(client, kind: str, path: Path | str) -> tuple[int, dict]:
    connection = await create_connection(client, type=kind, url=None, params={"path": str(path)})
    response = await client.post(f"/integration/connection/{connection['id']}/test")
    return response.status_code, response.json()


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
async def test_a_readable_file_folder_or_glob_passes(client, tmp_path: Path, kind: str):
    (tmp_path / f"orders.{kind}").write_text("id\n1\n" if kind == "csv" else '{"id": 1}\n')
    for path in (tmp_path, tmp_path / f"orders.{kind}", tmp_path / f"ord*.{kind}", tmp_path / f"new.{kind}"):
        assert await live_test(client, kind, path) == (200, {"code": 200, "message": "连接成功", "data": None})


async def test_a_missing_path_or_empty_glob_names_it(client, tmp_path: Path):
    for path, name in ((tmp_path / "nowhere" / "x.csv", "x.csv"), (tmp_path / "none_*.csv", "none_*.csv")):
        status, body = await live_test(client, "csv", path)
        assert (status, body["message"]) == (400, f"连接失败：源表不存在：{name}")


async def test_upsert_into_a_file_is_refused_naming_the_mode(client, tmp_path: Path):
    source = await create_connection(client)
    target = await create_connection(client, type="jsonl", url=None, params={"path": str(tmp_path)})
    body = batch_body(source["id"], target["id"], target={"table": "orders", "mode": "upsert", "keyColumns": ["id"]})
    response = await client.post("/integration/batch", json=body)
    assert response.status_code == 400
    assert response.json()["message"] == "参数错误：目标类型 jsonl 不支持 upsert 模式"

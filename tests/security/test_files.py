"""docs/spec.md §7 "Files", end to end through the real API, worker and broker on real files: csv, jsonl and
sqlite connections may only name paths inside BATCHSYNC_FILE_ROOTS (checked when stored and again for
every file a run opens), never the state directory or /proc; a sqlite query source only reads.

The layout: `root/` is a file root; `app/` is one too but holds the state directory `app/state/`
(its secrets must stay refused although they lie inside a root); `outside/` is no root and holds a
secret and a victim file that nothing may read or change."""

import os
import sqlite3
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.connectors.sqlite.connection import close, connect
from service.sync.model import Endpoint
from tests.support.api import api_client, api_settings, asyncpg_url
from tests.support.builders import unique
from tests.support.policy import policy_for
from tests.support.stack import Stack, create_batch, running_stack, stack_settings, wait_for_run

REFUSED = "文件路径不在允许的目录中"
SECRET = "TOP-SECRET-42"
VICTIM = '{"untouched": true}\n'


@dataclass(frozen=True)
class Place:
    root: Path
    app: Path
    state: Path
    outside: Path


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Place:
    base = tmp_path_factory.mktemp("confined")
    root, app, outside = base / "root", base / "app", base / "outside"
    state = app / "state"
    for folder in (root, state / "files", outside):
        folder.mkdir(parents=True)
    for name in ("jwt_secret", "secret_key"):
        (state / name).write_text("k" * 40)
        os.chmod(state / name, 0o600)
    (outside / "orders.csv").write_text(f"id,secret\n1,{SECRET}\n")
    sqlite3.connect(outside / "victim.db").close()
    return Place(root, app, state, outside)


@pytest.fixture(scope="module")
async def stack(state_dsn, broker, place: Place):
    settings = stack_settings(state_dsn, broker.bootstrap, file_roots=f"{place.root}:{place.app}",
                              data_dir=place.state)
    async with running_stack(settings) as running:
        yield running


@pytest.fixture
def here(place: Place) -> Path:
    """A fresh folder inside the root for one test."""
    folder = place.root / uuid.uuid4().hex[:8]
    folder.mkdir()
    return folder


@pytest.fixture
def victim(place: Place) -> Path:
    path = place.outside / f"victim_{uuid.uuid4().hex[:6]}.jsonl"
    path.write_text(VICTIM)
    os.chmod(path, 0o600)
    return path


async def post_connection(stack: Stack, kind: str, path: str | Path, **params: object) -> tuple[int, dict]:
    body = {"name": unique(kind), "type": kind}
    body |= {"url": f"sqlite://{path}"} if kind == "sqlite" else {"params": {"path": str(path), **params}}
    response = await stack.client.post("/integration/connection", headers=stack.headers(), json=body)
    return response.status_code, response.json() | {"name": body["name"]}


async def connection(stack: Stack, kind: str, path: str | Path, **params: object) -> int:
    status, body = await post_connection(stack, kind, path, **params)
    assert status == 200, body
    return int(body["data"]["id"])


async def failed_run(stack: Stack, source_id: int, target_id: int, source: dict, target: dict) -> dict:
    """Run a new batch to its end; the run as /runs/{id} reports it, which must have failed."""
    batch = await create_batch(stack, unique("batch"), source_id, target_id, source, target)
    response = await stack.client.post(f"/integration/batch/{batch}/sync", params={"wait": 0},
                                       headers=stack.headers())
    assert response.status_code == 202, response.text
    run = await wait_for_run(stack, batch, response.json()["data"]["runId"])
    assert run["status"] == "FAILED", run
    return run


def denied(run: dict) -> bool:
    return run["errorCode"] == "ACCESS_DENIED" and REFUSED in (run["message"] or "")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def escapes(place: Place) -> list[tuple[str, str]]:
    (place.root / "link.csv").unlink(missing_ok=True)
    (place.root / "link.csv").symlink_to(place.outside / "orders.csv")
    if not (place.root / "door").is_symlink():
        (place.root / "door").symlink_to(place.outside)
    return [
        ("csv", "/etc/passwd"),
        ("csv", "/proc/self/environ"),
        ("csv", "file:///proc/self/environ"),
        ("csv", str(place.state / "jwt_secret")),
        ("jsonl", str(place.state / "secret_key")),
        ("csv", str(place.state)),
        ("csv", f"{place.state}/files/../jwt_secret"),
        ("csv", f"{place.root}/../outside/orders.csv"),
        ("csv", "../outside/orders.csv"),
        ("csv", str(place.outside)),
        ("csv", str(place.root / "link.csv")),
        ("csv", str(place.root / "door")),
        ("jsonl", str(place.root / "door" / "new.jsonl")),
        ("jsonl", "/tmp/pwned"),
        ("sqlite", "/etc/passwd"),
        ("sqlite", str(place.state / "state.db")),
        ("sqlite", str(place.outside / "victim.db")),
        ("sqlite", f"{place.root}/../outside/victim.db"),
    ]


async def test_a_connection_naming_a_path_outside_the_roots_is_refused_and_not_stored(stack, place):
    for kind, path in escapes(place):
        if path.startswith("file://"):
            response = await stack.client.post("/integration/connection", headers=stack.headers(),
                                               json={"name": unique(kind), "type": kind, "url": path})
            status, body = response.status_code, response.json() | {"name": None}
        else:
            status, body = await post_connection(stack, kind, path)
        assert (status, body["code"], body["message"], body["data"]) == (400, 400, REFUSED, None), (kind, path)
        if body["name"]:
            listed = await stack.client.get("/integration/connection/list", params={"name": body["name"]},
                                            headers=stack.headers())
            assert listed.json()["data"]["total"] == 0
    await connection(stack, "csv", place.state / "files" / "orders.csv")  # the one open part of the state dir


async def test_an_edit_to_a_path_outside_is_refused_and_the_stored_path_kept(stack, here, place):
    kept = str(here / "orders.csv")
    connection_id = await connection(stack, "csv", kept)
    for path in ("/etc/passwd", str(place.state / "jwt_secret"), f"{here}/../../outside/orders.csv"):
        response = await stack.client.put(f"/integration/connection/{connection_id}", headers=stack.headers(),
                                          json={"name": unique("csv"), "type": "csv", "params": {"path": path}})
        assert (response.status_code, response.json()["message"]) == (400, REFUSED)
    stored = await stack.client.get(f"/integration/connection/{connection_id}", headers=stack.headers())
    assert stored.json()["data"]["params"]["path"] == kept


async def test_a_symlink_planted_after_creation_fails_the_run_and_reads_nothing(stack, here, place):
    """A file swapped for a link, a folder swapped for a link, and one link among a glob's matches."""
    (here / "in").mkdir()
    (here / "in" / "orders.csv").write_text("id,secret\n1,public\n")
    (here / "parts").mkdir()
    (here / "parts" / "orders_1.csv").write_text("id,secret\n1,public\n")
    sources = [await connection(stack, "csv", path) for path in
               (here / "in" / "orders.csv", here / "in", here / "parts" / "orders_*.csv")]
    target = await connection(stack, "jsonl", here / "out")
    (here / "out").mkdir()
    for name in "abc":
        (here / "out" / f"{name}.jsonl").touch()

    (here / "in" / "orders.csv").unlink()
    (here / "in" / "orders.csv").symlink_to(place.outside / "orders.csv")
    first = await failed_run(stack, sources[0], target, {"table": "orders"}, {"table": "a"})
    (here / "in").rename(here / "was_in")
    (here / "in").symlink_to(place.outside)
    second = await failed_run(stack, sources[1], target, {"table": "orders"}, {"table": "b"})
    (here / "parts" / "orders_2.csv").symlink_to(place.outside / "orders.csv")
    third = await failed_run(stack, sources[2], target, {"table": "orders"}, {"table": "c"})

    assert denied(first) and denied(second), (first, second)
    assert denied(third), (third["errorCode"], third["message"])
    assert all(SECRET not in path.read_text() for path in (here / "out").rglob("*") if path.is_file())


async def test_the_connection_test_resolves_the_path_again(stack, here, place):
    (here / "orders.csv").write_text("id\n1\n")
    connection_id = await connection(stack, "csv", here / "orders.csv")
    (here / "orders.csv").unlink()
    (here / "orders.csv").symlink_to(place.outside / "orders.csv")
    response = await stack.client.post(f"/integration/connection/{connection_id}/test", headers=stack.headers())
    assert (response.status_code, response.json()["message"]) == (400, f"连接失败：{REFUSED}")


async def test_a_target_never_writes_through_a_planted_link(stack, here, place, victim):
    """A jsonl file and a sqlite database swapped for links to files outside after the connection was
    stored: the run fails, and the files outside keep their bytes and their 0600 mode."""
    (here / "orders.csv").write_text("id,secret\n1,public\n")
    source = await connection(stack, "csv", here / "orders.csv")
    jsonl = await connection(stack, "jsonl", here / "out")
    database = await connection(stack, "sqlite", here / "out.db")
    (here / "out").mkdir()
    (here / "out" / "orders.jsonl").symlink_to(victim)
    victim_db = place.outside / f"victim_{uuid.uuid4().hex[:6]}.db"
    sqlite3.connect(victim_db).close()
    before = victim_db.read_bytes()
    (here / "out.db").symlink_to(victim_db)

    to_jsonl = await failed_run(stack, source, jsonl, {"table": "orders"}, {"table": "orders", "mode": "overwrite"})
    to_sqlite = await failed_run(stack, source, database, {"table": "orders"}, {"table": "orders", "create": True})

    assert denied(to_jsonl) and denied(to_sqlite), (to_jsonl, to_sqlite)
    assert (victim.read_text(), mode(victim)) == (VICTIM, 0o600)
    assert victim_db.read_bytes() == before
    assert sorted(p.name for p in place.outside.iterdir() if p.name.startswith(victim_db.name)) == [victim_db.name]


async def test_files_a_target_creates_are_private_and_a_replaced_file_keeps_its_mode(stack, here):
    (here / "orders.jsonl").write_text('{"id": 1, "name": "a"}\n{"id": 2, "name": "b"}\n')
    source = await connection(stack, "jsonl", here / "orders.jsonl", columns={"id": "int", "name": "string"})
    out = await connection(stack, "csv", here / "out")
    database = await connection(stack, "sqlite", here / "out.db")
    (here / "out").mkdir()
    for target, spec in ((out, {"table": "orders", "create": True}), (database, {"table": "orders", "create": True})):
        batch = await create_batch(stack, unique("batch"), source, target, {"table": "orders"}, spec)
        response = await stack.client.post(f"/integration/batch/{batch}/sync", headers=stack.headers())
        assert response.status_code == 200, response.text
    created = here / "out" / "orders.csv"
    assert created.read_text() == "id,name\n1,a\n2,b\n"
    assert mode(created) == 0o600 and mode(here / "out.db") == 0o600
    assert all(mode(p) in (0o600, 0o700) for p in (here / "out" / ".batchsync").rglob("*"))

    os.chmod(created, 0o640)
    batch = await create_batch(stack, unique("batch"), source, out, {"table": "orders"},
                               {"table": "orders", "mode": "overwrite"})
    response = await stack.client.post(f"/integration/batch/{batch}/sync", headers=stack.headers())
    assert response.status_code == 200, response.text
    assert mode(created) == 0o640


@pytest.mark.parametrize("query", [
    "ATTACH DATABASE '{outside}/stolen.db' AS stolen",
    "DELETE FROM t",
    "PRAGMA user_version = 7",
    "INSERT INTO t VALUES (2, 'forged')",
])
async def test_a_sqlite_query_source_only_reads(stack, here, place, query):
    path = here / "source.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO t VALUES (1, 'kept')")
    db.close()
    source = await connection(stack, "sqlite", path)
    target = await connection(stack, "jsonl", here)
    run = await failed_run(stack, source, target, {"query": query.format(outside=place.outside)},
                           {"table": "out", "create": True})
    assert run["errorCode"] == "ACCESS_DENIED", run
    assert not (place.outside / "stolen.db").exists()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT * FROM t").fetchall() == [(1, "kept")]
        assert db.execute("PRAGMA user_version").fetchone() == (0,)
    db.close()


async def test_without_file_roots_every_file_connection_is_refused(state_dsn, tmp_path):
    async with api_client(api_settings(asyncpg_url(state_dsn), file_roots=None)) as client:
        for body in ({"type": "csv", "params": {"path": str(tmp_path / "orders.csv")}},
                     {"type": "jsonl", "params": {"path": str(tmp_path)}},
                     {"type": "sqlite", "url": f"sqlite://{tmp_path}/x.db"},
                     {"type": "csv", "params": {}}):
            response = await client.post("/integration/connection", json={"name": unique("f"), **body})
            assert (response.status_code, response.json()["message"]) == (400, REFUSED), body


async def test_a_sqlite_url_cannot_add_uri_parameters(tmp_path):
    """The URI is built from the resolved path: `?mode=…`, `&vfs=…` in a url name a file, not options."""
    path = tmp_path / "a.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER)")
    db.close()
    before = path.read_bytes()
    target = Endpoint("sqlite", url=f"sqlite://{path}?mode=rw&cache=shared", policy=policy_for(tmp_path))
    conn = await connect(target, "target", 1)
    await close(conn)
    assert (tmp_path / "a.db?mode=rw&cache=shared").is_file() and path.read_bytes() == before

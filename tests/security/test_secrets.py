"""docs/spec.md §7 "Secrets at rest", through the real API, worker and state database: no table holds a connection
secret in clear, a masked secret follows its connection only to the same destination, keys rotate, the
migration encrypts old rows, and neither a failed save nor a masked-key oversight puts a secret in a log."""

import asyncio
import json
import logging
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from service.catalog.redaction import MASK
from service.cli import app
from service.cli.secrets import dev_secret_key
from service.config import Settings
from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.security.secrets import key_id
from tests.support.api import api_client, api_settings, asyncpg_url, create_connection
from tests.support.builders import table_fingerprint, unique
from tests.support.databases import fresh_database
from tests.support.http_api import TOKEN, ApiServer, serving
from tests.support.stack import SOLO, create_batch, running_stack, stack_settings

pytestmark = pytest.mark.usefixtures("fresh_secret_memory")

PG_SECRET = "pg-SECRET-at-rest-3141"
HEADER_SECRET = "hdr-SECRET-custom-2718"
QUERY_KEY, QUERY_SIG = "qkey-SECRET-1618", "qsig-SECRET-1414"
ROWS = [{"id": i, "customer": f"c{i}", "amount": f"{i}.50"} for i in range(1, 31)]
MOVED = "修改连接地址时必须重新输入密码"
OLD_KEY, NEW_KEY = "rotation-old-key-0123456789abcdef", "rotation-new-key-0123456789abcdef"


def with_password(dsn: str, password: str) -> str:
    return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)


async def every_row_as_text(dsn: str) -> str:
    """Every row of every table of the state database, as text: what a database dump would show."""
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [r["tablename"] for r in found]
        parts = []
        for table in tables:
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{table}" t')
            parts += [f"{table}: {r['row']}" for r in rows]
        return "\n".join(parts)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def api():
    server = ApiServer(auth="bearer")
    server.add("orders", ROWS)
    with serving(server) as running:
        yield running


@pytest.fixture
def elsewhere():
    """A second host an attacker controls; it must never receive a request."""
    with serving(ApiServer()) as server:
        yield server


@pytest.fixture(scope="module")
async def stack(state_dsn, broker):
    async with running_stack(stack_settings(state_dsn, broker.bootstrap, **SOLO)) as running:
        yield running


def http_body(api: ApiServer, **overrides: Any) -> dict[str, Any]:
    return {"name": unique("api"), "type": "http", "url": f"{api.url}/api/orders?key={QUERY_KEY}&sig={QUERY_SIG}",
            "params": {"auth": {"type": "bearer", "token": TOKEN}, "headers": {"X-Api-Key": HEADER_SECRET},
                       "pagination": {"type": "page", "pageSize": 10}, "recordsPath": "data.items",
                       "tableAsPath": False}} | overrides


async def post(stack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await stack.client.post(path, headers=stack.headers(), json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def put(stack, connection_id: int, body: dict[str, Any]) -> Any:
    return await stack.client.put(f"/integration/connection/{connection_id}", headers=stack.headers(), json=body)


async def create_target(dsn: str, table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE TABLE "{table}" (id integer PRIMARY KEY, customer text, amount numeric)')
    finally:
        await conn.close()


async def sync_into_target(stack, source_id: int, target_dsn: str) -> tuple[dict[str, Any], str]:
    table = unique("orders")
    await create_target(target_dsn, table)
    target = await post(stack, "/integration/connection",
                        {"name": unique("tgt"), "type": "postgresql", "url": with_password(target_dsn, PG_SECRET)})
    batch_id = await create_batch(stack, unique("batch"), source_id, target["id"], {"table": "orders"},
                                  {"table": table, "mode": "append"})
    response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
    return response.json(), table


async def test_no_table_holds_a_connection_secret_in_clear(stack, api, state_dsn, target_dsn) -> None:
    source = await post(stack, "/integration/connection", http_body(api))
    answer, table = await sync_into_target(stack, source["id"], target_dsn)
    assert answer["code"] == 200, answer
    assert (await table_fingerprint(target_dsn, table))[0] == len(ROWS)

    dump = await every_row_as_text(state_dsn)
    for secret in (PG_SECRET, TOKEN, HEADER_SECRET, QUERY_KEY, QUERY_SIG):
        assert secret not in dump, f"{secret} stored in clear"
    assert source["id"] and f"key={MASK}&sig={MASK}" in dump

    shown = (await stack.client.get(f"/integration/connection/{source['id']}", headers=stack.headers())).json()
    assert shown["data"]["url"] == f"{api.url}/api/orders?key={MASK}&sig={MASK}"
    assert shown["data"]["params"]["auth"] == {"type": "bearer", "token": MASK}
    assert shown["data"]["params"]["headers"] == {"X-Api-Key": MASK}


async def test_a_masked_secret_is_not_sent_to_a_new_host(stack, api, elsewhere) -> None:
    source = await post(stack, "/integration/connection", http_body(api))
    shown = (await stack.client.get(f"/integration/connection/{source['id']}", headers=stack.headers())).json()["data"]
    moved = {"name": shown["name"], "type": "http", "url": f"{elsewhere.url}/api/orders",
             "params": shown["params"]}

    response = await put(stack, source["id"], moved)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": MOVED, "data": None}
    only_query = moved | {"url": shown["url"].replace(api.url, elsewhere.url), "params": {"tableAsPath": False}}
    assert (await put(stack, source["id"], only_query)).json()["message"] == MOVED

    tested = await stack.client.post(f"/integration/connection/{source['id']}/test", headers=stack.headers())
    assert tested.json()["message"] == "连接成功"
    assert elsewhere.requests == []


@pytest.mark.parametrize("change", ["host", "port", "user", "type"])
async def test_a_database_password_stays_only_with_type_host_port_and_user(stack, target_dsn, change) -> None:
    url = with_password(target_dsn, PG_SECRET)
    created = await post(stack, "/integration/connection", {"name": unique("pg"), "type": "postgresql", "url": url})
    masked = created["url"]
    edited = {"host": masked.replace("127.0.0.1", "localhost"), "port": masked.replace(":5432/", ":5433/"),
              "user": masked.replace("postgres:", "intruder:"), "type": masked.replace("postgresql:", "mysql:")}[change]
    body = {"name": created["name"], "type": "mysql" if change == "type" else "postgresql", "url": edited}
    response = await put(stack, created["id"], body)
    assert response.json() == {"code": 400, "message": MOVED, "data": None}

    new_password = await put(stack, created["id"], body | {"url": edited.replace(MASK, "typed-again-1")})
    assert new_password.status_code == 200, new_password.text


async def test_an_edit_on_the_same_host_keeps_the_secrets_and_syncs(stack, api, target_dsn) -> None:
    source = await post(stack, "/integration/connection", http_body(api))
    shown = (await stack.client.get(f"/integration/connection/{source['id']}", headers=stack.headers())).json()["data"]
    body = {"name": shown["name"], "type": "http", "url": shown["url"],
            "params": shown["params"] | {"pagination": {"type": "page", "pageSize": 7}}}

    response = await put(stack, source["id"], body)
    assert response.status_code == 200, response.text

    answer, table = await sync_into_target(stack, source["id"], target_dsn)
    assert answer["code"] == 200 and answer["data"]["recordsSynced"] == len(ROWS), answer


@pytest.mark.parametrize(("key", "message"), [("delimeter", "params.delimeter 不是 csv 连接可用的参数"),
                                              ("conn_str", "params.conn_str 不是 csv 连接可用的参数")])
async def test_an_unknown_key_is_400_naming_it_at_create_and_edit(stack, tmp_path, key, message) -> None:
    body = {"name": unique("csv"), "type": "csv", "params": {"path": str(tmp_path), key: ";"}}
    created = await stack.client.post("/integration/connection", headers=stack.headers(), json=body)
    assert created.json() == {"code": 400, "message": f"参数错误：{message}", "data": None}

    good = await post(stack, "/integration/connection", body | {"params": {"path": str(tmp_path)}})
    edited = await put(stack, good["id"], body | {"name": good["name"]})
    assert edited.json() == {"code": 400, "message": f"参数错误：{message}", "data": None}


async def test_secrets_in_url_queries_are_masked_for_every_type(stack, target_dsn, state_dsn) -> None:
    url = with_password(target_dsn, PG_SECRET) + "?passphrase=pp-SECRET-11&pw=pw-SECRET-22"
    created = await post(stack, "/integration/connection", {"name": unique("pg"), "type": "postgresql", "url": url})
    assert created["url"].endswith(f"?passphrase={MASK}&pw={MASK}") and PG_SECRET not in created["url"]
    dump = await every_row_as_text(state_dsn)
    assert "pp-SECRET-11" not in dump and "pw-SECRET-22" not in dump


async def test_a_failed_save_logs_no_parameters(state_dsn, caplog: pytest.LogCaptureFixture) -> None:
    """What SQLAlchemy puts in a failed statement's message is what the error log shows."""
    engine = make_engine(asyncpg_url(state_dsn))
    try:
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(DBAPIError) as failed:
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO connections (id, name, type, url) VALUES (:id, :n, 'x', :u)"),
                                       {"id": 2**40, "n": "x", "u": f"postgresql://u:{PG_SECRET}@h/db"})
            logging.getLogger("service.api.errors").error("unexpected", exc_info=failed.value)
    finally:
        await engine.dispose()
    assert PG_SECRET not in str(failed.value)
    assert PG_SECRET not in caplog.text


def test_rotate_reencrypts_every_row_and_the_old_key_is_no_longer_needed(source_dsn) -> None:
    with fresh_database("bs_rotate") as dsn:
        url = asyncpg_url(dsn)
        upgrade(url)

        async def create() -> list[int]:
            async with api_client(api_settings(url, secret_key=OLD_KEY)) as client:
                pg = await create_connection(client, url=with_password(source_dsn, PG_SECRET))
                http = await create_connection(client, type="http", url="https://api.example/v1",
                                               params={"auth": {"type": "bearer", "token": TOKEN}})
                return [pg["id"], http["id"]]

        ids = asyncio.run(create())
        result = CliRunner().invoke(app, ["secrets", "rotate"], env={
            "BATCHSYNC_DATABASE_URL": dsn, "BATCHSYNC_SECRET_KEY": NEW_KEY, "BATCHSYNC_SECRET_KEY_PREVIOUS": OLD_KEY})
        assert result.exit_code == 0, result.output
        assert f"re-encrypted 2 connection(s) with key {key_id(NEW_KEY)}" in result.output

        async def check() -> tuple[set[str], int, str]:
            conn = await asyncpg.connect(dsn)
            try:
                key_ids = {r["secrets_key_id"] for r in await conn.fetch("SELECT secrets_key_id FROM connections")}
            finally:
                await conn.close()
            async with api_client(api_settings(url, secret_key=NEW_KEY)) as client:
                tested = await client.post(f"/integration/connection/{ids[0]}/test")
            async with api_client(api_settings(url, secret_key=OLD_KEY)) as client:
                stale = await client.post(f"/integration/connection/{ids[0]}/test")
            return key_ids, tested.json()["code"], stale.json()["message"]

        key_ids, code, stale = asyncio.run(check())
        assert key_ids == {key_id(NEW_KEY)}
        assert code == 200
        assert stale == "连接失败：连接密钥无法解密"


CLEAR_ROWS = [
    (1, "old_pg", "postgresql", f"postgresql://app:{PG_SECRET}@db.example:5432/app", {}, {}),
    (2, "old_api", "http", f"https://api.example/v1?key={QUERY_KEY}",
     {"auth": {"type": "bearer", "token": TOKEN}, "headers": {"X-Api-Key": HEADER_SECRET}}, {}),
    (3, "old_csv", "csv", None, {"path": "/data", "delimiter": ";"}, {}),
    (4, "old_odd", "postgresql", "postgresql://app@db/app", {"passphrase": "odd-SECRET-99"}, {"pw": "odd-SECRET-98"}),
]


async def _insert_clear_rows(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for row in CLEAR_ROWS:
            await conn.execute("INSERT INTO connections (id, name, type, url, params, options) "
                               "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)",
                               *row[:4], *(json.dumps(v) for v in row[4:]))
    finally:
        await conn.close()


def test_migration_0004_encrypts_rows_stored_in_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = (PG_SECRET, QUERY_KEY, TOKEN, HEADER_SECRET, "odd-SECRET-99", "odd-SECRET-98")
    with fresh_database("bs_migrate_secrets") as dsn:
        url = asyncpg_url(dsn)
        upgrade(url, "0003")
        asyncio.run(_insert_clear_rows(dsn))

        monkeypatch.delenv("BATCHSYNC_SECRET_KEY")
        with pytest.raises(RuntimeError, match="BATCHSYNC_SECRET_KEY is not set"):
            upgrade(url)
        assert PG_SECRET in asyncio.run(every_row_as_text(dsn))
        monkeypatch.undo()

        upgrade(url)
        dump = asyncio.run(every_row_as_text(dsn))
        for secret in secrets:
            assert secret not in dump, f"{secret} still in clear"

        async def shown_and_opened() -> tuple[list[dict], dict]:
            async with api_client(api_settings(url)) as client:
                shown = [(await client.get(f"/integration/connection/{i}")).json()["data"] for i in (1, 2, 3)]
            from service.catalog.connections import endpoint_of
            from service.db.engine import make_sessionmaker
            from service.db.models import Connection
            from service.security.policy import AccessPolicy

            engine = make_engine(url)
            try:
                async with make_sessionmaker(engine)() as session:
                    endpoint = endpoint_of(await session.get(Connection, 2), AccessPolicy.from_settings(Settings()))
            finally:
                await engine.dispose()
            return shown, {"url": endpoint.url, "params": endpoint.params}

        shown, opened = asyncio.run(shown_and_opened())
        assert shown[0]["url"] == f"postgresql://app:{MASK}@db.example:5432/app"
        assert shown[1]["params"] == {"auth": {"type": "bearer", "token": MASK}, "headers": {"X-Api-Key": MASK}}
        assert shown[2]["params"] == {"path": "/data", "delimiter": ";"}
        assert opened == {"url": CLEAR_ROWS[1][3], "params": CLEAR_ROWS[1][4]}


def test_the_parts_refuse_to_start_without_a_secret_key() -> None:
    env = {"BATCHSYNC_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "BATCHSYNC_KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "BATCHSYNC_SECRET_KEY": None, "BATCHSYNC_JWT_SECRET": "cli-test-secret-0123456789abcdef"}
    for part in ("api", "worker", "projector"):
        result = CliRunner().invoke(app, [part], env=env)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines() == [
            "error: BATCHSYNC_SECRET_KEY is not set: it encrypts connection secrets and signs events "
            "(`batchsync up` creates one in its data directory)"]


def test_up_keeps_its_secret_key_in_the_data_dir(tmp_path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, secret_key=None)
    created = dev_secret_key(settings, create=True)
    key_file = tmp_path / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert created.secret_key is not None and len(created.secret_key.get_secret_value()) >= 32
    assert dev_secret_key(settings, create=True).secret_key == created.secret_key

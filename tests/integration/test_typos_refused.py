"""Typos are refused at the API, naming the key (issue 9 item 4): unknown body keys at every level,
unknown connection params, misspelt URL schemes; and the connection types are published as JSON Schema."""

import json

import pytest

from service.connectors.registry import KINDS, describe
from tests.support.api import api_client, api_settings, asyncpg_url, batch_body, create_batch, create_connection, unique


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        yield client


@pytest.fixture(scope="module")
async def pair(client) -> tuple[int, int]:
    return (await create_connection(client))["id"], (await create_connection(client))["id"]


def _message(response) -> str:
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 400 and response.json()["data"] is None
    return str(response.json()["message"])


@pytest.mark.parametrize(("change", "message"), [
    ({"chunksize": 500}, "参数错误：未知字段 chunksize，是否应为 chunkSize？"),
    ({"source": {"tabel": "orders"}}, "参数错误：source：未知字段 tabel，是否应为 table？"),
    ({"source": {"table": "orders", "cursorColum": "id"}},
     "参数错误：source：未知字段 cursorColum，是否应为 cursorColumn？"),
    ({"target": {"table": "t", "mdoe": "append"}}, "参数错误：target：未知字段 mdoe，是否应为 mode？"),
    ({"mapping": [{"form": "id", "to": "ident"}]}, "参数错误：mapping：未知字段 form，是否应为 from？"),
    ({"zzz": 1}, "参数错误：未知字段 zzz"),
])
async def test_an_unknown_batch_key_is_a_400_naming_it_on_create_and_edit(client, pair, change, message) -> None:
    assert _message(await client.post("/integration/batch", json=batch_body(*pair) | change)) == message
    created = await create_batch(client, *pair)
    edited = await client.put(f"/integration/batch/{created['id']}", json=batch_body(*pair) | change)
    assert _message(edited) == message


async def test_both_spellings_are_known_and_a_get_answer_can_be_put_back(client, pair) -> None:
    created = await create_batch(client, *pair, chunk_size=700)
    assert created["chunkSize"] == 700
    again = await client.put(f"/integration/batch/{created['id']}", json=created | {"chunkSize": 800})
    assert again.status_code == 200, again.text
    assert again.json()["data"]["chunkSize"] == 800 and again.json()["data"]["configVersion"] == 2

    connection = await create_connection(client)
    edited = await client.put(f"/integration/connection/{connection['id']}", json=connection)
    assert edited.status_code == 200, edited.text


async def test_an_unknown_connection_key_is_a_400_naming_it(client) -> None:
    body = {"name": unique("c"), "type": "postgresql", "url": "postgresql://u@127.0.0.1/db", "parmas": {}}
    assert _message(await client.post("/integration/connection", json=body)) == (
        "参数错误：未知字段 parmas，是否应为 params？")


async def test_a_hostile_unknown_key_is_echoed_safely(client, pair) -> None:
    body = json.dumps(batch_body(*pair) | {"\ud800" + "k" * 200: 1})  # ASCII JSON: `\ud800` escaped
    response = await client.post("/integration/batch", content=body, headers={"Content-Type": "application/json"})
    message = _message(response)
    assert message.startswith("参数错误：未知字段 \\ud800k") and len(message) < 120


@pytest.mark.parametrize(("kind", "params", "message"), [
    ("csv", {"path": "/tmp", "delimeter": ";"}, "params.delimeter 不是 csv 连接可用的参数"),
    ("http", {"pagination": {"type": "page", "pagParam": "p"}}, "params.pagination.pagParam 不是 http 连接可用的参数"),
    ("kafka", {"bootstrap": "h:9092", "topik": "t"}, "params.topik 不是 kafka 连接可用的参数"),
])
async def test_an_unknown_param_is_a_400_naming_it(client, kind, params, message) -> None:
    body = {"name": unique("c"), "type": kind, "params": params}
    if kind == "http":
        body["url"] = "https://api.example.com/v1"
    assert _message(await client.post("/integration/connection", json=body)) == f"参数错误：{message}"


@pytest.mark.parametrize(("kind", "url", "message"), [
    ("postgresql", "postgresq://app:pw@127.0.0.1:5432/db",
     "url：postgresql 连接的地址应以 postgresql:// 或 postgres:// 或 postgresql+asyncpg:// 开头，而不是 postgresq://"),
    ("mysql", "mysq://root@127.0.0.1/db",
     "url：mysql 连接的地址应以 mysql:// 或 mariadb:// 或 mysql+asyncmy:// 或 mysql+aiomysql:// 开头，而不是 mysq://"),
    ("http", "htps://api.example.com/v1", "url：http 连接的地址应以 https:// 或 http:// 开头，而不是 htps://"),
    ("sqlite", "sqlit:///data/x.db", "url：sqlite 连接的地址应以 sqlite:// 开头，而不是 sqlit://"),
    ("kafka", "kafak://127.0.0.1:9092", "url：kafka 连接的地址应以 kafka:// 开头，而不是 kafak://"),
    ("postgresql", "127.0.0.1:5432/db", "url：postgresql 连接的地址应以 postgresql:// 或 postgres:// 或 "
                                        "postgresql+asyncpg:// 开头"),
    ("postgresql", None, "url：postgresql 连接须指定地址，例如 postgresql://user:password@host:5432/database"),
])
async def test_a_misspelt_url_scheme_is_a_400_naming_the_expected_one(client, kind, url, message) -> None:
    body = {"name": unique("c"), "type": kind, "url": url}
    response = await client.post("/integration/connection", json=body)
    assert _message(response) == f"参数错误：{message}"
    assert "pw" not in response.text


async def test_a_bare_kafka_bootstrap_url_is_still_accepted(client) -> None:
    created = await create_connection(client, type="kafka", url="127.0.0.1:9092", params={"topic": "t"})
    assert created["url"] == "127.0.0.1:9092"


async def test_connection_types_publish_each_kind_with_its_params_schema(client) -> None:
    response = await client.get("/integration/connection/types")
    assert response.status_code == 200, response.text
    types = response.json()["data"]
    assert [t["type"] for t in types] == sorted(KINDS)
    assert types == describe()
    by_type = {t["type"]: t for t in types}
    assert by_type["postgresql"]["url"]["schemes"][0] == "postgresql"
    assert by_type["postgresql"]["modes"] == ["append", "overwrite", "upsert"]
    assert by_type["http"]["target"] is False and by_type["http"]["modes"] == []
    assert by_type["kafka"]["params"]["properties"]["saslPassword"]["secret"] is True
    for kind in types:
        assert kind["params"]["type"] == "object" and kind["params"]["additionalProperties"] is False
        assert kind["table"]
    assert "delimiter" in by_type["csv"]["params"]["properties"]
    assert by_type["http"]["params"]["$defs"]["HttpAuth"]["additionalProperties"] is False


async def test_connection_types_need_the_list_permission(state_dsn) -> None:
    from tests.support.api import bearer

    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        denied = await client.get("/integration/connection/types", headers=bearer(["integration:batch:list"]))
        allowed = await client.get("/integration/connection/types", headers=bearer(["integration:connection:list"]))
        anonymous = await client.get("/integration/connection/types", headers={"Authorization": ""})
    assert denied.status_code == 403 and allowed.status_code == 200 and anonymous.status_code == 401

"""Which connection types exist is the registry's answer: the API refuses others and publishes the list."""

from service.connectors.registry import KINDS
from tests.support.api import api_client, api_settings, unique


async def test_an_unregistered_type_is_a_400_naming_the_registered_ones(state_dsn):
    async with api_client(api_settings(state_dsn)) as client:
        response = await client.post("/integration/connection", json={
            "name": unique("c"), "type": "oracle", "url": "oracle://h/db"})
    assert response.status_code == 400, response.text
    assert response.json()["message"] == (
        f"参数错误：type：必须是 {', '.join(sorted(KINDS))} 之一，而不是 oracle")


async def test_the_openapi_document_lists_exactly_the_registered_types(state_dsn):
    async with api_client(api_settings(state_dsn)) as client:
        schema = (await client.get("/openapi.json")).json()
    for model in ("ConnectionIn", "ConnectionOut"):
        assert schema["components"]["schemas"][model]["properties"]["type"]["enum"] == sorted(KINDS)
    assert sorted(KINDS) == ["csv", "http", "jsonl", "kafka", "mysql", "postgresql", "sqlite"]

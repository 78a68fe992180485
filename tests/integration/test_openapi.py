"""The OpenAPI document says what the API really answers (docs/spec.md §3): each operation has a summary and a
description, errors are the envelope with their real status codes (no FastAPI 422), and its request examples
cover every registered connector kind and are accepted by the real app."""

import json
from typing import Any

from service.connectors.registry import KINDS
from tests.support.api import api_client, api_settings, unique

ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"


async def _document(state_dsn: str) -> dict[str, Any]:
    async with api_client(api_settings(state_dsn)) as client:
        response = await client.get("/openapi.json", headers={"Authorization": ""})
    assert response.status_code == 200, response.text
    return response.json()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, operation) for path, methods in document["paths"].items()
            for method, operation in methods.items()]


def _schema_ref(answer: dict[str, Any]) -> str | None:
    return answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


async def test_every_operation_has_a_summary_and_a_description(state_dsn):
    document = await _document(state_dsn)
    assert len(_operations(document)) >= 20
    for method, path, operation in _operations(document):
        assert operation.get("summary", "").strip(), f"{method} {path} has no summary"
        assert operation.get("description", "").strip(), f"{method} {path} has no description"


async def test_no_422_anywhere_bad_input_is_a_400_envelope(state_dsn):
    document = await _document(state_dsn)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path, operation in _operations(document):
        assert "422" not in operation["responses"], f"{method} {path} lists a 422"
        if operation.get("parameters") or operation.get("requestBody"):
            assert _schema_ref(operation["responses"].get("400", {})) == ENVELOPE_REF, f"{method} {path}"
    assert '"422"' not in json.dumps(document)


async def test_the_error_envelope_schema_is_code_message_data(state_dsn):
    schema = (await _document(state_dsn))["components"]["schemas"]["ErrorEnvelope"]
    assert set(schema["properties"]) == {"code", "message", "data"}
    assert set(schema["required"]) == {"code", "message"}


async def test_every_protected_operation_lists_401_and_403_as_envelopes(state_dsn):
    document = await _document(state_dsn)
    protected = [(m, p, op) for m, p, op in _operations(document) if op.get("security")]
    integration = [(m, p) for m, p, _ in _operations(document) if p.startswith("/integration/")]
    assert [(m, p) for m, p, _ in protected] == integration and len(protected) >= 18, "every /integration operation"
    for method, path, operation in protected:
        for code in ("400", "401", "403", "503"):
            answer = operation["responses"].get(code)
            assert answer is not None, f"{method} {path} omits {code}"
            assert _schema_ref(answer) == ENVELOPE_REF, f"{method} {path} {code}"
            example = answer["content"]["application/json"]["example"]
            assert set(example) == {"code", "message", "data"} and example["code"] == int(code)
    for method, path, operation in _operations(document):
        if "{id}" in path:
            assert "404" in operation["responses"], f"{method} {path} looks an id up but omits 404"
        if method in ("post", "put") and "requestBody" in operation:
            assert "413" in operation["responses"], f"{method} {path} takes a body but omits 413"


async def test_sync_and_retry_list_their_real_answers(state_dsn):
    document = await _document(state_dsn)
    for action in ("sync", "retry"):
        responses = document["paths"][f"/integration/batch/{{id}}/{action}"]["post"]["responses"]
        assert {"200", "202", "400", "401", "403", "404", "409", "503"} <= set(responses), action
        accepted = responses["202"]["content"]["application/json"]["schema"]["$ref"]
        assert accepted == "#/components/schemas/Envelope_SyncAccepted_"
        assert _schema_ref(responses["409"]) == ENVELOPE_REF
    for path in ("/integration/connection", "/integration/connection/{id}"):
        method = "post" if path.endswith("connection") else "put"
        assert "409" in document["paths"][path][method]["responses"], f"{method} {path}: a name taken"


def _examples(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    body = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    return {name: example["value"] for name, example in body["examples"].items()}


async def test_the_connection_body_has_one_example_per_registered_kind(state_dsn):
    document = await _document(state_dsn)
    examples = _examples(document, "/integration/connection", "post")
    assert set(examples) == set(KINDS)
    for kind, value in examples.items():
        assert value["type"] == kind
    batches = _examples(document, "/integration/batch", "post")
    modes = {value["target"]["mode"] for value in batches.values()}
    assert modes == {"append", "overwrite", "upsert"}
    assert any("query" in value["source"] for value in batches.values())
    assert any(value.get("mapping") for value in batches.values())


async def test_every_documented_example_is_accepted_by_the_real_app(state_dsn):
    """Posted as documented (only the names made unique and the connection ids real): each is a 200."""
    document = await _document(state_dsn)
    settings = api_settings(state_dsn, file_roots="/data")
    async with api_client(settings) as client:
        ids = {}
        for kind, value in _examples(document, "/integration/connection", "post").items():
            response = await client.post("/integration/connection", json=value | {"name": unique(kind)})
            assert response.status_code == 200, f"{kind}: {response.text}"
            ids[kind] = response.json()["data"]["id"]
        for name, value in _examples(document, "/integration/batch", "post").items():
            body = value | {"name": unique(name), "sourceConnectionId": ids["postgresql"],
                            "targetConnectionId": ids["mysql"]}
            response = await client.post("/integration/batch", json=body)
            assert response.status_code == 200, f"{name}: {response.text}"

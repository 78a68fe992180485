"""docs/connectors.md is generated from the connector schemas (a changed model is drift), and every JSON
example under docs/examples/ is accepted by the real API as written."""

import json
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import Field

from service.connectors import csv as csv_kind
from service.connectors.csv.params import CsvParams
from service.connectors.kind import ConnectorKind
from service.connectors.reference import EXAMPLES, PAGE, main, render
from service.connectors.registry import KINDS
from tests.support.api import api_client, api_settings, asyncpg_url

CONNECTIONS = sorted((EXAMPLES / "connections").glob("*.json"))
BATCHES = sorted((EXAMPLES / "batches").glob("*.json"))


def test_the_committed_page_matches_the_models() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), "run `python -m service.connectors.reference` and commit"
    assert main(["--check"]) == 0


def test_a_new_option_is_drift() -> None:
    class WiderCsv(CsvParams):
        kind: ClassVar[str] = "csv"
        escape: str | None = Field(default=None, description="One character that escapes a quote")

    kinds = KINDS | {"csv": ConnectorKind(**{**csv_kind.KIND.__dict__, "params": WiderCsv})}
    page = render(kinds)
    assert page != render()
    assert "| `escape` | string |  |  | One character that escapes a quote |" in page


def test_the_page_has_every_kind_its_options_and_the_file_rule() -> None:
    page = render()
    for kind in KINDS:
        assert f"## `{kind}`" in page
        assert f"docs/examples/connections/{kind}.json" in page
    assert "| `delimiter` | string |" in page and "| `saslPassword` | string |  | yes |" in page
    assert "## Files: the table is the file name" in page


def test_there_is_a_connection_and_a_batch_example_of_every_kind() -> None:
    assert sorted(p.stem for p in CONNECTIONS) == sorted(KINDS)
    sources = {p.stem.split("-to-")[0] for p in BATCHES}
    targets = {p.stem.split("-to-")[1] for p in BATCHES}
    assert sources == set(KINDS)
    assert targets == {name for name, kind in KINDS.items() if kind.target is not None}


async def test_every_example_is_accepted_by_the_api(state_dsn, tmp_path: Path) -> None:
    """The examples as written (their /data paths allowed as a file root), each batch between connections
    created from the examples of its two kinds."""
    settings = api_settings(asyncpg_url(state_dsn), file_roots=f"/data:{tmp_path}")
    async with api_client(settings) as client:
        ids = {}
        for path in CONNECTIONS:
            body = json.loads(path.read_text(encoding="utf-8"))
            body["name"] = f"{body['name']}-{tmp_path.name}"
            response = await client.post("/integration/connection", json=body)
            assert response.status_code == 200, (path.name, response.text)
            ids[path.stem] = response.json()["data"]["id"]
        for path in BATCHES:
            source, target = path.stem.split("-to-")
            body = json.loads(path.read_text(encoding="utf-8"))
            body |= {"name": f"{body['name']}-{tmp_path.name}", "sourceConnectionId": ids[source],
                     "targetConnectionId": ids[target]}
            response = await client.post("/integration/batch", json=body)
            assert response.status_code == 200, (path.name, response.text)


@pytest.mark.parametrize("path", CONNECTIONS, ids=lambda p: p.stem)
def test_a_typo_in_an_example_would_be_refused(path: Path) -> None:
    """The test above can fail: the same examples with a misspelt key are refused by the params schema."""
    from service.connectors.params import ParamsInvalid
    from service.connectors.registry import validate_params

    body = json.loads(path.read_text(encoding="utf-8"))
    with pytest.raises(ParamsInvalid):
        validate_params(body["type"], {**body.get("params", {}), "delimeter": ","}, url=body.get("url"))

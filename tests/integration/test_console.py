"""The web console's assets and headers, and the offline /docs and /redoc (issue 10 items 1 and 3).

The browser tests (tests/browser/) drive the pages; these check what a browser cannot be trusted to
report: every reference is local, every module a page imports is served, no script builds markup from
strings, every label a script asks for is in the catalog, and the headers that make an injected value inert.
"""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from schemas.messages import CONSOLE_LABELS
from service.console.router import STATIC
from tests.support.api import api_client, api_settings, asyncpg_url

SCRIPTS = sorted((STATIC / "js").rglob("*.js"))
IMPORT = re.compile(r"""^import\s[^'"]*['"](?P<path>[^'"]+)['"];?$""", re.MULTILINE)
LABEL = re.compile(r"""\bt\(\s*['"`](?P<key>[a-zA-Z]+\.[a-zA-Z]+)['"`]""")


@pytest.fixture(scope="module")
async def client(state_dsn):
    async with api_client(api_settings(asyncpg_url(state_dsn))) as client:
        client.headers.pop("Authorization")
        yield client


class References(HTMLParser):
    """The URLs of src= and href= attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


def is_local(url: str) -> bool:
    return not re.match(r"^([a-z][a-z0-9+.-]*:|//)", url, re.IGNORECASE)


async def test_root_redirects_to_the_console_without_a_token(client) -> None:
    for path in ("/", "/console"):
        response = await client.get(path)
        assert response.status_code == 307 and response.headers["location"] == "/console/"


async def test_the_console_is_served_with_headers_that_keep_injected_markup_inert(client) -> None:
    response = await client.get("/console/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy["script-src"] == "'self'", "no inline script, no eval, no other origin"
    assert policy["frame-ancestors"] == "'none'" and policy["connect-src"] == "'self'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in response.text and not re.search(r"\son[a-z]+\s*=", response.text), "no inline code"


async def test_every_reference_of_the_page_and_every_module_import_is_local_and_served(client) -> None:
    page = (await client.get("/console/")).text
    urls = references(page)
    assert any(url.endswith("app.js") for url in urls) and all(map(is_local, urls)), urls
    for url in urls:
        response = await client.get(f"/console/{url}")
        assert response.status_code == 200, url
    for script in SCRIPTS:
        for match in IMPORT.finditer(script.read_text(encoding="utf-8")):
            target = (script.parent / match["path"]).resolve().relative_to(STATIC.resolve()).as_posix()
            response = await client.get(f"/console/{target}")
            assert response.status_code == 200, f"{script.name} imports {match['path']}"
            assert response.headers["content-type"].startswith("text/javascript"), "modules need a JS type"
    assert len(SCRIPTS) >= 10


def test_no_script_builds_markup_from_strings_or_reaches_another_origin() -> None:
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
                           r"EventSource|https?://(?!www\.w3\.org/2000/svg)")
    found = [f"{path.name}: {m.group()}" for path in SCRIPTS for m in forbidden.finditer(path.read_text())]
    assert found == []


def test_the_token_is_kept_in_session_storage_and_sent_only_as_a_header() -> None:
    code = "\n".join(path.read_text() for path in SCRIPTS)
    assert "sessionStorage.setItem" in code and "localStorage.setItem('batchsync.token'" not in code
    assert "Authorization: `Bearer ${token()}`" in code
    assert not re.search(r"[?&](token|access_token)=", code)


def test_every_label_a_script_asks_for_is_in_the_catalog_in_both_languages() -> None:
    asked = {m["key"] for path in SCRIPTS for m in LABEL.finditer(path.read_text())}
    assert len(asked) > 50
    assert sorted(asked - set(CONSOLE_LABELS)) == []
    for key, (zh, en) in CONSOLE_LABELS.items():
        assert zh and en and re.search(r"[\u4e00-\u9fff]", zh + key.replace(".", "")) or key == "nav.language", key


async def test_labels_are_served_in_chinese_and_english(client) -> None:
    labels = (await client.get("/console/labels.json")).json()
    assert labels["zh"]["nav.batches"] == "数据批次" and labels["en"]["nav.batches"] == "Batches"
    assert set(labels["zh"]) == set(labels["en"]) == set(CONSOLE_LABELS)


@pytest.mark.parametrize("path", ["/console/nothing.js", "/console/..%2f..%2fpyproject.toml",
                                  "/console/%2e%2e/router.py", "/console/js/../../router.py", "/console/js"])
async def test_only_the_console_assets_are_served(client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code in (401, 404), response.text
    assert "import" not in response.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_reference_only_local_assets_that_are_served(client, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    urls = references(response.text) + re.findall(r"""url:\s*['"]([^'"]+)""", response.text)
    assert urls and all(map(is_local, urls)), urls
    assert "cdn" not in response.text.lower() and "fonts.googleapis" not in response.text
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
        assert b"https://cdn" not in asset.content, f"{url} fetches from a CDN at run time"
    assert (await client.get("/openapi.json")).status_code == 200


def test_the_console_files_are_package_data() -> None:
    """pyproject's package-data patterns cover every asset, so an installed wheel serves the same console."""
    import tomllib

    patterns = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    console = patterns["service.console"]
    files = [path.relative_to(STATIC.parent) for path in STATIC.rglob("*") if path.is_file()]
    assert files and all(any(path.match(pattern) for pattern in console) for path in files), files

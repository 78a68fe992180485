"""Fixtures of the browser tests: the live service on a loopback port and a headless Chromium per test.

Every test module here is marked `browser` and `slow`; without selenium or Debian's chromium +
chromium-driver its tests skip, naming what is missing (`.ci/run` installs both when it can)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.chrome import browser_missing, chrome
from tests.support.live_server import LiveServer, live_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    reason = browser_missing()
    if reason is None:
        return
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def server(state_dsn: str, broker: Any) -> Iterator[LiveServer]:
    with live_server(state_dsn, broker.bootstrap) as running:
        yield running


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = chrome(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()

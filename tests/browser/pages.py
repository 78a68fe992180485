"""What the browser tests do to the console, in the operator's words: log in, open a page, wait for a thing."""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.live_server import LiveServer

WAIT = 30


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = WAIT) -> Any:
    """Poll `condition` until it is truthy. An element it found going stale (the console re-renders a page as
    live events arrive) is one more poll, not a failure."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def css(driver: Any, selector: str, timeout: float = WAIT) -> Any:
    """The first element matching `selector` once it is there (to wait for it, or to type into a form that
    no live event re-renders; read and click through `text`, `attribute` and `click`)."""
    return wait_for(driver, lambda d: _first(d, selector), timeout)


def _first(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return (driver.find_elements(By.CSS_SELECTOR, selector) or [None])[0]


def text(driver: Any, selector: str, timeout: float = WAIT) -> str:
    """The text of the first element matching `selector`, found and read in one poll."""
    return wait_for(driver, lambda d: [el.text] if (el := _first(d, selector)) is not None else None, timeout)[0]


def attribute(driver: Any, selector: str, name: str, timeout: float = WAIT) -> str | None:
    """An attribute of the first element matching `selector`, found and read in one poll."""
    return wait_for(driver, lambda d: [el.get_attribute(name)] if (el := _first(d, selector)) is not None else None,
                    timeout)[0]


def click(driver: Any, selector: str, timeout: float = WAIT) -> None:
    """Click the first element matching `selector`, found and clicked in one poll."""

    def clicked(d: Any) -> bool:
        el = _first(d, selector)
        if el is None:
            return False
        el.click()
        return True

    wait_for(driver, clicked, timeout)


def all_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def log_in(driver: Any, server: LiveServer, token: str) -> None:
    driver.get(server.url + "/")
    field = css(driver, "input[name=token]")
    field.send_keys(token)
    field.submit()
    wait_for(driver, lambda d: "#/login" not in d.current_url)


def open_page(driver: Any, server: LiveServer, hash_: str) -> None:
    driver.get(f"{server.url}/console/{hash_}")


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The browser console's errors since the last call (failed loads, uncaught exceptions, CSP refusals)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def connection(server: LiveServer, dsn: str, name: str | None = None) -> int:
    answer = server.api("POST", "/integration/connection",
                        json={"name": name or unique("conn"), "type": "postgresql", "url": dsn})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["data"]["id"])


def orders_batch(server: LiveServer, source_dsn: str, target_dsn: str, rows: int, *, name: str | None = None,
                 source_table: str | None = None, chunk_size: int = 1000, connection_name: str = "conn",
                 **extra: Any) -> int:
    """A batch copying a new orders table of `rows` rows (or `source_table`, which may not exist)."""
    table = unique("orders")
    if source_table is None:
        asyncio.run(create_orders(source_dsn, table, rows))
    asyncio.run(create_empty_like_orders(target_dsn, table))
    answer = server.api("POST", "/integration/batch", json={
        "name": name or unique("batch"), "sourceConnectionId": connection(server, source_dsn, unique(connection_name)),
        "source": {"table": source_table or table}, "targetConnectionId": connection(server, target_dsn),
        "target": {"table": table, "mode": "overwrite"}, "chunkSize": chunk_size, **extra})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["data"]["id"])


def projected_failure(server: LiveServer, batch_id: int, within: float = WAIT) -> None:
    """Wait until the projector has written the batch's failed run (the failures page reads the projection)."""
    deadline = time.monotonic() + within
    while True:
        rows = server.api("GET", "/integration/run/list?status=FAILED&pageSize=50").json()["data"]["rows"]
        if any(row["batchId"] == batch_id for row in rows):
            return
        assert time.monotonic() < deadline, f"no failed run of batch {batch_id} projected"
        time.sleep(0.1)

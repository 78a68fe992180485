"""The console in a real headless Chromium against the whole service (API, worker, projector, broker).

Each test saves screenshots in its tmp_path. Console errors are checked on every flow that should have
none; the limited-token test calls a refused endpoint on purpose and checks its answer instead."""

import asyncio
import time
from pathlib import Path

import pytest

from tests.browser.pages import (
    all_css,
    attribute,
    click,
    console_errors,
    css,
    log_in,
    open_page,
    orders_batch,
    projected_failure,
    screenshot,
    text,
    wait_for,
)
from tests.support.builders import create_orders, unique

pytestmark = [pytest.mark.browser, pytest.mark.slow]

XSS = '<img src=x onerror="window.__xss=1">'


def test_log_in_sync_a_batch_and_watch_its_run_reach_success_live(server, browser, tmp_path: Path,
                                                                   source_dsn, target_dsn) -> None:
    batch_id = orders_batch(server, source_dsn, target_dsn, 60_000, chunk_size=500)
    log_in(browser, server, server.token())
    css(browser, f'[data-batch-id="{batch_id}"]')
    assert text(browser, "#live.on"), "the live stream is connected"
    screenshot(browser, tmp_path, "batches")

    open_page(browser, server, f"#/batch/{batch_id}")
    assert attribute(browser, "[data-run-status]", "data-run-status") == "NEVER_RUN"
    click(browser, "h1 [data-action=sync]")
    seen: set[str] = set()

    def finished(driver) -> bool:
        status, details = driver.execute_script(
            "return [document.querySelector('[data-run-status]').dataset.runStatus,"
            " document.querySelector('.kv')?.textContent ?? '']")
        seen.add(status)
        if status == "RUNNING" and "progress" not in seen and "%" in details:
            seen.add("progress")
            screenshot(driver, tmp_path, "batch-running")
        return status == "SUCCESS"

    wait_for(browser, finished, timeout=90)
    assert "RUNNING" in seen and "progress" in seen, f"the live run was shown with its progress: {seen}"
    # read in one script: the tiles re-render as the statistics arrive, so a found element can go stale
    wait_for(browser, lambda d: "60,000" in d.execute_script(
        "return document.querySelector('.tiles')?.textContent ?? ''"))
    assert len(all_css(browser, ".chart svg rect")) == 1, "one bar per run"
    screenshot(browser, tmp_path, "batch-success")

    open_page(browser, server, "#/batches")
    assert text(browser, f'[data-batch-id="{batch_id}"] .badge[data-status="SUCCESS"]') == "成功"
    assert console_errors(browser) == []


def test_a_failed_run_shows_its_message_on_the_failures_page_and_the_batch(server, browser, tmp_path: Path,
                                                                           source_dsn, target_dsn) -> None:
    missing = unique("missing")
    batch_id = orders_batch(server, source_dsn, target_dsn, 0, source_table=missing)
    failed = server.api("POST", f"/integration/batch/{batch_id}/sync")
    assert failed.status_code == 400
    projected_failure(server, batch_id)
    log_in(browser, server, server.token())

    open_page(browser, server, "#/failed")
    assert text(browser, f'tr[data-batch-id="{batch_id}"] .run-message') == f"源表不存在：{missing}"
    screenshot(browser, tmp_path, "failed-runs")

    open_page(browser, server, f"#/batch/{batch_id}")
    wait_for(browser, lambda d: attribute(d, "[data-run-status]", "data-run-status") == "FAILED")
    assert f"源表不存在：{missing}" in text(browser, ".card")
    screenshot(browser, tmp_path, "batch-failed")

    asyncio.run(create_orders(source_dsn, missing, 1500))
    click(browser, "h1 [data-action=retry]")
    wait_for(browser, lambda d: d.execute_script(
        "return document.querySelector('[data-run-status]').dataset.runStatus") == "SUCCESS", timeout=60)
    assert "1,500" in text(browser, ".kv")
    assert console_errors(browser) == []


def test_sync_from_the_list_then_cancel_the_run_on_its_page(server, browser, tmp_path: Path,
                                                            source_dsn, target_dsn) -> None:
    batch_id = orders_batch(server, source_dsn, target_dsn, 300_000, chunk_size=500)
    log_in(browser, server, server.token())
    click(browser, f'[data-batch-id="{batch_id}"] [data-action=sync]')
    css(browser, f'[data-batch-id="{batch_id}"] .badge[data-status="RUNNING"]')
    click(browser, f'[data-batch-id="{batch_id}"] a')
    click(browser, "h1 [data-action=cancel]")
    wait_for(browser, lambda d: d.execute_script(
        "return document.querySelector('[data-run-status]').dataset.runStatus") == "CANCELLED", timeout=60)
    screenshot(browser, tmp_path, "batch-cancelled")
    run = server.api("GET", f"/integration/batch/{batch_id}").json()["data"]
    assert run["status"] == "CANCELLED"
    assert console_errors(browser) == []


def test_create_and_edit_a_connection_through_the_generated_form(server, browser, tmp_path: Path) -> None:
    name = unique("files")
    log_in(browser, server, server.token())
    open_page(browser, server, "#/connections")
    click(browser, "[data-action=create]")
    kind = css(browser, "select[name=type]")
    kind.find_element("css selector", "option[value=csv]").click()
    css(browser, "input[name=name]").send_keys(name)
    css(browser, "input[data-param=path]").send_keys(str(tmp_path))
    css(browser, "input[data-param=delimiter]").send_keys(";")
    click(browser, "select[data-param=header] option[value=false]")
    url = css(browser, "input[name=url]")
    assert url.get_attribute("placeholder").startswith("file://") and url.get_attribute("required") is None, \
        "the kind's URL form, optional for csv"
    screenshot(browser, tmp_path, "connection-form")
    click(browser, "form.connection button[type=submit]")

    css(browser, "[data-connection-id]")
    row_id = wait_for(browser, lambda d: next((r.get_attribute("data-connection-id")
                                               for r in all_css(d, "[data-connection-id]") if name in r.text), None))
    row = f'[data-connection-id="{row_id}"]'
    created = server.api("GET", f"/integration/connection/{row_id}").json()["data"]
    assert (created["type"], created["params"]) == ("csv", {"path": str(tmp_path), "delimiter": ";", "header": False})

    click(browser, f"{row} [data-action=edit]")
    delimiter = css(browser, "input[data-param=delimiter]")
    assert delimiter.get_attribute("value") == ";"
    delimiter.clear()
    delimiter.send_keys("|")
    click(browser, "form.connection button[type=submit]")
    wait_for(browser, lambda d: d.current_url.endswith("#/connections"))
    edited = server.api("GET", f"/integration/connection/{created['id']}").json()["data"]
    assert edited["params"]["delimiter"] == "|" and edited["params"]["header"] is False
    wait_for(browser, lambda d: name in text(d, row))
    click(browser, f"{row} [data-action=test]")
    wait_for(browser, lambda d: d.find_element("css selector", "#notice").text)
    screenshot(browser, tmp_path, "connections")
    assert console_errors(browser) == []


def test_data_is_shown_as_text_never_run_as_markup(server, browser, tmp_path: Path, source_dsn, target_dsn) -> None:
    batch_id = orders_batch(server, source_dsn, target_dsn, 0, name=unique(XSS), source_table=unique("missing"),
                            connection_name=XSS)
    assert server.api("POST", f"/integration/batch/{batch_id}/sync").status_code == 400
    projected_failure(server, batch_id)
    log_in(browser, server, server.token())
    for page in ("#/batches", f"#/batch/{batch_id}", "#/failed"):
        open_page(browser, server, page)
        css(browser, f'[data-batch-id="{batch_id}"]' if page != f"#/batch/{batch_id}" else "[data-run-status=FAILED]")
        time.sleep(0.3)
        assert XSS in browser.find_element("css selector", "main").text, page
        assert all_css(browser, "main img") == [], "no element was made from the data"
        assert browser.execute_script("return window.__xss") is None
        screenshot(browser, tmp_path, "xss-" + page.strip("#/").replace("/", "-"))
    assert console_errors(browser) == [], "not even a refused inline handler"


def test_a_limited_token_sees_no_button_it_may_not_use_and_the_server_still_refuses(
        server, browser, tmp_path: Path, source_dsn, target_dsn) -> None:
    batch_id = orders_batch(server, source_dsn, target_dsn, 10)
    log_in(browser, server, server.token(["integration:batch:list", "integration:batch:query"], sub="viewer"))
    css(browser, f'[data-batch-id="{batch_id}"]')
    assert all_css(browser, "[data-action]") == [], "no sync, retry, cancel or create for this token"
    nav = text(browser, "#nav")
    assert "数据批次" in nav and "连接" not in nav
    open_page(browser, server, f"#/batch/{batch_id}")
    css(browser, "[data-run-status]")
    assert all_css(browser, "[data-action]") == []
    screenshot(browser, tmp_path, "limited")

    refused = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const token = sessionStorage.getItem('batchsync.token');
        fetch(arguments[0], {method: 'POST', headers: {Authorization: 'Bearer ' + token}})
          .then(async (r) => done([r.status, (await r.json()).message]));
    """, f"/integration/batch/{batch_id}/sync")
    assert refused == [403, "无权限执行此操作"]


def test_a_scheduled_batch_shows_its_next_fire(server, browser, tmp_path: Path, source_dsn, target_dsn) -> None:
    batch_id = orders_batch(server, source_dsn, target_dsn, 1,
                            schedule={"cron": "30 2 * * *", "timezone": "Asia/Shanghai", "enabled": True})
    next_fire = server.api("GET", f"/integration/batch/{batch_id}").json()["data"]["nextFireTime"]
    assert next_fire
    log_in(browser, server, server.token())
    shown = browser.execute_script("const d = new Date(arguments[0]); const p = (n) => String(n).padStart(2, '0');"
                                   "return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} `"
                                   " + `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`", next_fire)
    wait_for(browser, lambda d: shown in text(d, f'[data-batch-id="{batch_id}"]'))
    open_page(browser, server, f"#/batch/{batch_id}")
    wait_for(browser, lambda d: "30 2 * * *" in text(d, "main") and shown in text(d, "main"))
    screenshot(browser, tmp_path, "scheduled")
    assert console_errors(browser) == []


def test_english_is_one_click_away_and_remembered(server, browser, tmp_path: Path) -> None:
    log_in(browser, server, server.token())
    assert text(browser, "h1") == "数据批次"
    click(browser, "#lang")
    wait_for(browser, lambda d: d.find_element("css selector", "h1").text == "Batches")
    browser.refresh()
    wait_for(browser, lambda d: d.find_element("css selector", "h1").text == "Batches")
    screenshot(browser, tmp_path, "english")
    click(browser, "#lang")
    wait_for(browser, lambda d: d.find_element("css selector", "h1").text == "数据批次")
    assert console_errors(browser) == []


def test_the_token_is_gone_after_logging_out(server, browser) -> None:
    log_in(browser, server, server.token())
    click(browser, "#logout")
    css(browser, "input[name=token]")
    assert browser.execute_script("return sessionStorage.getItem('batchsync.token')") is None
    assert console_errors(browser) == []


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_docs_render_offline(server, browser, tmp_path: Path, page: str) -> None:
    browser.get(server.url + page)
    if page == "/docs":
        wait_for(browser, lambda d: len(all_css(d, ".opblock")) > 20)
        assert "/integration/batch/{id}/sync" in browser.find_element("css selector", "body").text
    else:
        wait_for(browser, lambda d: "Sync a batch" in d.find_element("css selector", "body").text)
    screenshot(browser, tmp_path, page.strip("/"))
    assert console_errors(browser) == []


def test_a_split_run_shows_its_slices_with_their_workers(server, browser, tmp_path: Path, source_dsn,
                                                         target_dsn) -> None:
    batch_id = orders_batch(server, source_dsn, target_dsn, 40_000, chunk_size=2000,
                            split={"column": "id", "slices": 4})
    log_in(browser, server, server.token())
    open_page(browser, server, f"#/batch/{batch_id}")
    click(browser, "h1 [data-action=sync]")
    wait_for(browser, lambda d: d.execute_script(
        "return document.querySelector('[data-run-status]').dataset.runStatus") == "SUCCESS", timeout=90)
    # read in one script: the panel re-renders as the run and its events arrive
    rows = wait_for(browser, lambda d: d.execute_script(
        "const rows = [...document.querySelectorAll('[data-slices] tr[data-slice]')];"
        "return rows.length === 4 && rows.every((r) => r.dataset.sliceStatus === 'SUCCESS')"
        " ? rows.map((r) => [r.dataset.slice, r.textContent]) : null"))
    assert [number for number, _ in rows] == ["0", "1", "2", "3"]
    assert "∪ NULL" in rows[0][1] and "∞" in rows[0][1] and "∞" in rows[-1][1]
    screenshot(browser, tmp_path, "batch-slices")
    assert console_errors(browser) == []

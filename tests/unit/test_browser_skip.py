"""The browser tests skip only when Chromium cannot be had, and then say what to install."""

import shutil

import pytest

from tests.browser import chrome


def test_no_reason_to_skip_when_chromium_and_its_driver_are_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert chrome.browser_missing() is None


@pytest.mark.parametrize("absent", ["chromedriver", "chromium"])
def test_the_reason_names_the_debian_packages(monkeypatch: pytest.MonkeyPatch, absent: str) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None if name.startswith(absent) else f"/usr/bin/{name}")
    reason = chrome.browser_missing()
    assert reason is not None and "apt-get install -y chromium chromium-driver" in reason

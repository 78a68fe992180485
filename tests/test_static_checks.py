"""The static checks run with the suite, so `pytest` (the README's one command, and `.ci/run`) enforces them.

ruff (with the complexity, unused-argument and banned-API rules), `mypy --strict` and the import-linter
contracts that state the dependency rule of docs/architecture.md are all configured in pyproject.toml;
this module only runs them from the virtual environment that runs the tests and shows their output
when they fail. Their caches (.ruff_cache, .mypy_cache, .import_linter_cache) keep a rerun to seconds.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
"""The tools are installed beside the interpreter that runs the suite (the `dev` extra)."""

CHECKS = {
    "ruff": [str(BIN / "ruff"), "check", "--no-fix", "."],
    "mypy": [str(BIN / "mypy")],
    "import-linter": [str(BIN / "lint-imports")],
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_static_check_passes(name: str) -> None:
    result = subprocess.run(CHECKS[name], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}{result.stderr}"


def test_no_product_code_waits_with_asyncio_wait_for() -> None:
    """On Python 3.11 `asyncio.wait_for` returns the awaited result and drops a cancel that lands as the wait
    completes: a loop waiting with it runs on, and whoever stops it hangs (the full-run hang of the consume loop).
    `async with asyncio.timeout(...)` has no such race. ruff's banned-API rule cannot say it for the packages
    allowed Kafka, so this test does, for all of them."""
    found = [f"{path.relative_to(ROOT)}:{number}" for package in ("schemas", "service", "consumers", "producers")
             for path in sorted((ROOT / package).rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if "asyncio.wait_for(" in line and not line.lstrip().startswith("#")]
    assert found == [], f"use asyncio.timeout instead of asyncio.wait_for at {found}"

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

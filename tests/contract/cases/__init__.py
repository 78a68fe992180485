"""Connector cases for the contract suites: every module here exposes SOURCE_CASES and/or TARGET_CASES."""

import importlib
import pkgutil
from typing import Any


def collect(attribute: str) -> list[Any]:
    cases: list[Any] = []
    for module in pkgutil.iter_modules(__path__):
        cases.extend(getattr(importlib.import_module(f"{__name__}.{module.name}"), attribute, []))
    return cases

"""Reading what a process logged: one JSON object per line (BATCHSYNC_LOG_FORMAT=json, the default off a
terminal), other lines (the console's own prints, a crash's traceback) skipped."""

import json
from typing import Any


def json_lines(output: str) -> list[dict[str, Any]]:
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                found.append(value)
    return found


def logged(output: str, *, level: str | None = None, logger: str | None = None, **fields: Any) -> list[dict[str, Any]]:
    """The JSON log lines with this level, logger (a prefix) and these fields."""
    return [line for line in json_lines(output)
            if (level is None or line.get("level") == level)
            and (logger is None or str(line.get("logger", "")).startswith(logger))
            and all(line.get(key) == value for key, value in fields.items())]

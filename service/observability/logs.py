"""Log set-up of every command: one handler on stderr, JSON or text, with the run's ids on every line.

Code logs through the standard library (`logging.getLogger(__name__)`) as before. The formatters add what
is bound in context (`runId`, `batchId`, `correlationId`: service/observability/context.py) and the
record's `extra` fields (`errorCode`). The secret mask (service/logging_filters.py) has already rewritten
the message and the traceback text when the record was made; the formatters print that masked text and
never format the exception again.

`BATCHSYNC_LOG_FORMAT` picks `json` (one object per line, for a log pipeline) or `text` (for a person);
unset, a terminal gets text and anything else (a container, a file, a pipe) JSON.

Both formatters are plain `logging.Formatter`s: structlog's ProcessorFormatter cost 59 µs a line here
against 8 µs for these, and a small sync logs a few lines (bench/observability_cost.py).
"""

import json
import logging
import sys
import time
from typing import Any, Final, Literal

from service.config import Settings
from service.logging_filters import install as install_secret_mask
from service.observability.context import log_fields

Format = Literal["json", "text"]

QUIET_LOGGERS: Final = ("httpx", "httpcore")
"""Never below WARNING: they log full request URLs, and a source URL may carry credentials."""
CHATTY_LOGGERS: Final = ("aiokafka",)
"""WARNING unless BATCHSYNC_LOG_LEVEL=DEBUG: every group join, rebalance and leave is an INFO line."""
ACCESS_LOGGER: Final = "batchsync.access"
NOT_EXTRAS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "color_message", "taskName"}
"""Attributes every record has, what another handler's formatter stored on it, and uvicorn's coloured copy
of its message: the rest of a record's attributes are its `extra` fields."""


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so configuring again replaces it and nothing else."""


def configure(settings: Settings, *, default: Format | None = None, stream: Any = None) -> Format:
    """Install the stderr handler, the level, the quiet loggers and the secret mask; returns the format used.

    `default` is the format when BATCHSYNC_LOG_FORMAT is unset; without one, text on a terminal and JSON
    otherwise."""
    install_secret_mask()
    out = stream or sys.stderr
    chosen: Format = settings.log_format or default or ("text" if out.isatty() else "json")
    handler = _OurHandler(out)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    level = root.level
    for quiet in QUIET_LOGGERS:
        logging.getLogger(quiet).setLevel(max(logging.WARNING, level))
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(level if level <= logging.DEBUG else max(logging.WARNING, level))
    return chosen


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The bound ids, then the record's extras."""
    fields = dict(log_fields())
    fields.update((key, value) for key, value in record.__dict__.items() if key not in NOT_EXTRAS)
    return fields


def _traceback(record: logging.LogRecord) -> str | None:
    """The masked traceback text the secret mask stored; formatted here only for a record made before it."""
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    return record.exc_text or None


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", …ids, …extras, "exception"?}`, one object per line, UTC time."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {"ts": f"{stamp}.{int(record.msecs):03d}Z", "level": record.levelname,
                                "logger": record.name, "message": record.getMessage(), **_fields(record)}
        if (text := _traceback(record)) is not None:
            line["exception"] = text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`<local time> <LEVEL> <logger>: <message> key=value …`, then the traceback on its own lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record) + "".join(f" {key}={value}" for key, value in _fields(record).items())
        for text in (_traceback(record), record.stack_info):
            if text:
                line += "\n" + text
        return line

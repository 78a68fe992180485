"""Log set-up of every command: one handler on stderr, JSON or text, with the run's ids on every line.

Code logs through the standard library (`logging.getLogger(__name__)`) as before; structlog's
`ProcessorFormatter` renders each record, adding what is bound in context variables (`runId`, `batchId`,
`correlationId`: service/observability/context.py) and the record's `extra` fields (`errorCode`). The secret mask
(service/logging_filters.py) has already rewritten the message and the traceback text when the record
was made; the formatter prints that masked text, never a traceback formatted again from the exception.

`BATCHSYNC_LOG_FORMAT` picks `json` (one object per line, for a log pipeline) or `text` (for a person);
unset, a terminal gets text and anything else (a container, a file, a pipe) JSON.
"""

import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from service.config import Settings
from service.logging_filters import install as install_secret_mask

Format = Literal["json", "text"]

QUIET_LOGGERS: Final = ("httpx", "httpcore")
"""Never below WARNING: they log full request URLs, and a source URL may carry credentials."""
CHATTY_LOGGERS: Final = ("aiokafka",)
"""WARNING unless BATCHSYNC_LOG_LEVEL=DEBUG: every group join, rebalance and leave is an INFO line."""
DROPPED_EXTRAS: Final = frozenset({"color_message", "message", "asctime"})
"""Record attributes that are no extras: uvicorn's coloured copy of its message, and what another handler's
formatter (pytest's, say) already stored on the shared record."""
ACCESS_LOGGER: Final = "batchsync.access"


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
    handler.setFormatter(formatter(chosen))
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


def formatter(chosen: Format) -> structlog.stdlib.ProcessorFormatter:
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts") if chosen == "json" else \
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False, key="ts")
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.ExtraAdder(),
        _drop_extras,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        stamp,
        _masked_exception,
    ]
    renderer: Processor = _render_json if chosen == "json" else _render_text
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def _drop_extras(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key in DROPPED_EXTRAS & event.keys():
        del event[key]
    return event


def _masked_exception(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """The traceback text the secret mask rewrote, instead of one formatted again from `exc_info`."""
    record = event.get("_record")
    if event.pop("exc_info", None) is not None and isinstance(record, logging.LogRecord):
        event["exception"] = record.exc_text or ""
    event.pop("stack_info", None)
    if isinstance(record, logging.LogRecord) and record.stack_info:
        event["stack"] = record.stack_info
    return event


def _render_json(_: WrappedLogger, __: str, event: EventDict) -> str:
    """One object per line: time, level, logger and message first, then the bound ids and extras."""
    line = {"ts": event.pop("ts", None), "level": str(event.pop("level", "")).upper(),
            "logger": event.pop("logger", None), "message": event.pop("event", ""), **event}
    return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


def _render_text(_: WrappedLogger, __: str, event: MutableMapping[str, Any]) -> str:
    """`<time> <LEVEL> <logger>: <message> key=value …`, then the traceback on its own lines."""
    head = f"{event.pop('ts', '')} {str(event.pop('level', '')).upper()} {event.pop('logger', '')}: " \
           f"{event.pop('event', '')}"
    exception = event.pop("exception", None)
    stack = event.pop("stack", None)
    fields = "".join(f" {key}={value}" for key, value in event.items())
    tail = "".join(f"\n{text}" for text in (exception, stack) if text)
    return head + fields + tail

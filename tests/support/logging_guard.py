"""Logging left as each test found it, and who changed it reported.

Tests share one process: a command run in-process (typer's CliRunner), a server started in-process or a library
may add handlers, set levels, disable loggers (`logging.config` disables every existing logger unless told
not to), stop propagation, call `logging.disable` or swap the record factory. A later test's `caplog` (a
handler on the root logger) then sees nothing of a logger that no longer reaches it. `snapshot` before a
test and `restore` after it put back what changed and say what it was.
"""

import logging
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class _LoggerState:
    level: int
    disabled: bool
    propagate: bool
    handlers: tuple[logging.Handler, ...]


@dataclass
class Snapshot:
    loggers: dict[str, _LoggerState] = field(default_factory=dict)
    disable: int = logging.NOTSET
    factory: Any = None


def _loggers() -> dict[str, logging.Logger]:
    found: dict[str, logging.Logger] = {"": logging.getLogger()}
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            found[name] = logger
    return found


def _state(logger: logging.Logger) -> _LoggerState:
    """pytest's own capture handlers are left out: it attaches them to every non-propagating logger at each phase
    and takes them off itself."""
    ours = tuple(h for h in logger.handlers if not type(h).__module__.startswith("_pytest."))
    return _LoggerState(logger.level, logger.disabled, logger.propagate, ours)


def snapshot() -> Snapshot:
    return Snapshot({name: _state(logger) for name, logger in _loggers().items()},
                    logging.root.manager.disable, logging.getLogRecordFactory())


def _put_back(shown: str, logger: logging.Logger, was: _LoggerState, now: _LoggerState) -> list[str]:
    changes: list[str] = []
    if now.level != was.level:
        changes.append(f"{shown}: level {logging.getLevelName(was.level)} -> {logging.getLevelName(now.level)}")
        logger.setLevel(was.level)
    if now.disabled != was.disabled:
        changes.append(f"{shown}: disabled {was.disabled} -> {now.disabled}")
        logger.disabled = was.disabled
    if now.propagate != was.propagate:
        changes.append(f"{shown}: propagate {was.propagate} -> {now.propagate}")
        logger.propagate = was.propagate
    if now.handlers != was.handlers:
        added = [h for h in now.handlers if h not in was.handlers]
        removed = [h for h in was.handlers if h not in now.handlers]
        changes.append(f"{shown}: handlers +{added} -{removed}")
        for handler in added:
            logger.removeHandler(handler)
        for handler in removed:
            logger.addHandler(handler)
    return changes


def _put_back_factory(before: Snapshot) -> list[str]:
    """The secret mask wraps the factory it finds, once per process (service/logging_filters.py): that one change
    is what production does and stays; any other is put back."""
    from service import logging_filters

    now = logging.getLogRecordFactory()
    if now is before.factory or (before.factory is logging.LogRecord and logging_filters._installed is not None):
        return []
    logging.setLogRecordFactory(before.factory)
    return [f"record factory {before.factory!r} -> {now!r}"]


def restore(before: Snapshot) -> list[str]:
    """Put back every logger's level, handlers, `disabled` and `propagate` as `before` had them, turn off a
    `logging.disable` and put back the record factory; returns what was changed (nothing on a clean test).

    Loggers made during the test (a library imported late sets its own up) are left alone."""
    changes: list[str] = []
    for name, logger in _loggers().items():
        was, now = before.loggers.get(name), _state(logger)
        if was is None and now.disabled:  # reported only: it is a library's own first set-up
            changes.append(f"{name}: created disabled")
        elif was is not None and now != was:
            changes.extend(_put_back(name or "root", logger, was, now))
    if logging.root.manager.disable != before.disable:
        changes.append(f"logging.disable({logging.root.manager.disable})")
        logging.disable(before.disable)
    return changes + _put_back_factory(before)

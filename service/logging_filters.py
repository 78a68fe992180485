"""One filter that masks secrets in every log record, whoever logs it (ours, httpx, asyncpg, aiokafka).

What it masks: URL passwords and every URL query value (`?key=`, `sig`…), `Authorization`/`Bearer`
credentials, `name=value` and `"name": "value"` for the secret fields the connection schemas declare,
and the values of every connection secret this process has decrypted (`remember`), wherever they
appear. It is installed as part of the log record factory, so it covers handlers added later too
(uvicorn's, pytest's) and runs once per record, before any handler formats it.
"""

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from service.catalog.redaction import MASK, secret_field_names

MIN_REMEMBERED_LENGTH = 5
"""Shorter values are not masked wherever they occur: they would blank out ordinary words."""
MAX_REMEMBERED = 1024

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")
_USERINFO = re.compile(r"(://[^\s:/@]*:)[^\s@/]+@")
_QUERY_VALUE = re.compile(r"([?&#][^=&#\s]+=)[^&#\s\"']+")
_CREDENTIAL = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{4,}", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"((?:authorization|proxy-authorization|cookie)[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]+",
                          re.IGNORECASE)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _names_pattern(names: Iterable[str]) -> re.Pattern[str]:
    spelled = sorted({form for name in names for form in (name, _snake(name))}, key=len, reverse=True)
    alternatives = "|".join(re.escape(name) for name in spelled)
    return re.compile(rf"([\"']?\b(?:{alternatives})\b[\"']?\s*[:=]\s*[\"']?)(?![{{\[])[^\"'\s,&;}}\]]+",
                      re.IGNORECASE)


class _Remembered:
    """A bounded set of secret values seen by this process, as one compiled pattern."""

    def __init__(self) -> None:
        self._values: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            changed = False
            for value in values:
                if len(value) >= MIN_REMEMBERED_LENGTH and value != MASK:
                    changed |= value not in self._values
                    self._values[value] = None
                    self._values.move_to_end(value)
            while len(self._values) > MAX_REMEMBERED:
                self._values.popitem(last=False)
            if changed:
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def mask(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None else text


_remembered = _Remembered()


def remember(values: Iterable[Any]) -> None:
    """Mask these secret values in every later log line of this process."""
    _remembered.add(str(v) for v in values if v is not None)


class SecretMask(logging.Filter):
    """Rewrites a record's message and exception text with every recognisable secret masked."""

    def __init__(self, names: Iterable[str] | None = None) -> None:
        super().__init__()
        self._names = _names_pattern(secret_field_names() if names is None else names)

    def mask(self, text: str) -> str:
        text = _URL.sub(lambda m: _QUERY_VALUE.sub(rf"\g<1>{MASK}", _USERINFO.sub(rf"\g<1>{MASK}@", m.group())),
                        text)
        text = _CREDENTIAL.sub(rf"\g<1> {MASK}", text)
        text = _AUTH_HEADER.sub(rf"\g<1>{MASK}", text)
        text = self._names.sub(rf"\g<1>{MASK}", text)
        return _remembered.mask(text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: leave it for logging's own error report
            return True
        record.msg, record.args = self.mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True


_installed: SecretMask | None = None


def install() -> SecretMask:
    """Mask secrets in every record created from now on in this process (idempotent)."""
    global _installed
    if _installed is not None:
        return _installed
    mask = SecretMask()
    make_record = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        mask.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = mask
    return mask

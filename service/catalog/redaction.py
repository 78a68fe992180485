"""Hiding connection secrets on the way out, and keeping them when a client sends the mask back.

A client that GETs a connection, edits one field and PUTs it whole sends `******` where the
secrets were; `restore_*` puts the stored secrets back so that round trip never erases them.
"""

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "******"

_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "apikey", "accesskey", "privatekey",
                 "authorization", "credential", "cookie", "signature", "sessionkey")
_SECRET_EXACT = {"auth", "pass", "jaas", "jaasconfig"}
_SEPARATORS = re.compile(r"[^a-z0-9]")


def is_secret_key(key: str) -> bool:
    """Keys that look like they hold a secret, however they are cased or separated."""
    normal = _SEPARATORS.sub("", key.lower())
    return normal in _SECRET_EXACT or any(word in normal for word in _SECRET_WORDS)


def redact_values(value: Any) -> Any:
    """A copy of a params/options tree with every value under a secret-looking key masked, and URL passwords."""
    if isinstance(value, dict):
        return {k: MASK if is_secret_key(str(k)) and v not in (None, "") else redact_values(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_values(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def restore_values(incoming: Any, stored: Any) -> Any:
    """`incoming` with each masked value replaced by the stored value at the same place."""
    if isinstance(incoming, dict):
        old = stored if isinstance(stored, dict) else {}
        return {k: old.get(k) if v == MASK and k in old else restore_values(v, old.get(k))
                for k, v in incoming.items()}
    if isinstance(incoming, list):
        old_list = stored if isinstance(stored, list) else []
        return [restore_values(item, old_list[i] if i < len(old_list) else None)
                for i, item in enumerate(incoming)]
    if isinstance(incoming, str) and isinstance(stored, str) and "://" in incoming:
        return restore_url(incoming, stored)
    return incoming


def _split(url: str) -> tuple[Any, str | None, list[tuple[str, str]]] | None:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return None
    return parts, password, parse_qsl(parts.query, keep_blank_values=True)


def _rebuild(parts: Any, password: str | None, query: list[tuple[str, str]]) -> str:
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{password}@{hostport}"
    new_query = urlencode(query, safe="*") if query else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, new_query, parts.fragment))


def redact_url(url: str | None) -> str | None:
    """`postgresql://user:pw@host/db` → `postgresql://user:******@host/db`; secret query values too."""
    if not url:
        return url
    split = _split(url)
    if split is None:
        return MASK
    parts, password, query = split
    secret_query = any(is_secret_key(k) and v for k, v in query)
    if password is None and not secret_query:
        return url
    masked_query = [(k, MASK if is_secret_key(k) and v else v) for k, v in query]
    return _rebuild(parts, MASK if password is not None else None, masked_query if secret_query else [])


def restore_url(incoming: str | None, stored: str | None) -> str | None:
    """Put the stored password (and secret query values) back where the client sent the mask."""
    if not incoming or not stored or MASK not in incoming:
        return incoming
    new, old = _split(incoming), _split(stored)
    if new is None or old is None:
        return incoming
    parts, password, query = new
    _, old_password, old_query = old
    if password == MASK and old_password is not None:
        password = old_password
    old_values = dict(old_query)
    restored = [(k, old_values[k] if v == MASK and k in old_values else v) for k, v in query]
    return _rebuild(parts, password, restored if any(v == MASK for _, v in query) else [])

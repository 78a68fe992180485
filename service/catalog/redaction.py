"""Which parts of a connection are secret, derived from its type's schema (`service/connectors/<kind>/params.py`).

`split` cuts a connection into its public form, every secret replaced by `******` (what the
`connections` table stores in clear and what the API shows), and the secrets themselves (what is
stored encrypted). `merge` puts them back together. `restore` serves the GET-edit-PUT round trip:
a client sends the mask back where a secret was, and gets the stored secret kept there.

Secret are: the URL's password, every value of its query string and its fragment, and every value
under a params field the schema marks secret. A key the schema does not declare cannot reach the
store (the catalog refuses it); in rows written before the schemas existed it is treated as secret.
"""

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from service.connectors.registry import PARAMS

MASK = "******"
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Split:
    url: str | None
    params: dict[str, Any]
    options: dict[str, Any]
    secrets: dict[str, Any] | None
    """`{"url": clear url?, "values": [[path, value], ...]}`, or None when the connection holds no secret."""


def _is_secret(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get("secret") is True


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, seen through `X | None`."""
    candidates = get_args(annotation) if get_origin(annotation) in (Union, type(int | None)) else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _leaves(value: Any, path: Path, found: list[tuple[Path, Any]]) -> Any:
    """`value` with every non-empty scalar in it masked, and recorded in `found`."""
    if isinstance(value, dict):
        return {k: _leaves(v, (*path, k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [_leaves(v, (*path, i), found) for i, v in enumerate(value)]
    if value is None or value == "" or isinstance(value, bool):
        return value
    found.append((path, value))
    return MASK


def _mask(
    model: type[BaseModel] | None, value: dict[str, Any], path: Path, found: list[tuple[Path, Any]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        field = model.model_fields.get(key) if model is not None else None
        sub = _submodel(field.annotation) if field is not None else None
        if field is None or _is_secret(field):
            out[key] = _leaves(item, (*path, key), found)
        elif sub is not None and isinstance(item, dict):
            out[key] = _mask(sub, item, (*path, key), found)
        else:
            out[key] = item
    return out


@dataclass(frozen=True)
class _Url:
    """A URL in raw pieces, so that masking and restoring never re-encode what they do not touch."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    path: str
    query: list[tuple[str, str, str]]
    fragment: str

    @classmethod
    def parse(cls, url: str) -> "_Url":
        parts = urlsplit(url)  # ValueError on a malformed URL
        userinfo, at, host = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        query = [item.partition("=") for item in parts.query.split("&")] if parts.query else []
        return cls(parts.scheme, user if at else None, password if colon else None, host, parts.path, query,
                   parts.fragment)

    def text(self) -> str:
        netloc = self.host
        if self.user is not None:
            netloc = f"{self.user}{':' + self.password if self.password is not None else ''}@{self.host}"
        query = "&".join(k + s + v for k, s, v in self.query)
        return urlunsplit((self.scheme, netloc, self.path, query, self.fragment))

    def masked(self) -> "_Url":
        return _Url(self.scheme, self.user, MASK if self.password else self.password, self.host, self.path,
                    [(k, s, MASK if v else v) for k, s, v in self.query], MASK if self.fragment else "")

    def secrets(self) -> list[str]:
        return [v for v in (self.password, *(v for _, _, v in self.query), self.fragment) if v]


def _split_url(url: str | None) -> tuple[str | None, list[str]]:
    """The public URL and the secrets it held."""
    if not url:
        return url, []
    try:
        parsed = _Url.parse(url)
    except ValueError:
        return MASK, [url]
    secrets = parsed.secrets()
    return (parsed.masked().text() if secrets else url), secrets


def split(kind: str, url: str | None, params: dict[str, Any], options: dict[str, Any] | None = None) -> Split:
    """The public form of a connection and its secrets, as its type's schema declares them."""
    found: list[tuple[Path, Any]] = []
    public_params = _mask(PARAMS.get(kind), params or {}, ("params",), found)
    public_options = _mask(None, options or {}, ("options",), found)
    public_url, url_secrets = _split_url(url)
    secrets: dict[str, Any] = {}
    if url_secrets:
        secrets["url"] = url
    if found:
        secrets["values"] = [[list(path), value] for path, value in found]
    return Split(public_url, public_params, public_options, secrets or None)


def _set(tree: dict[str, Any], path: Path, value: Any) -> None:
    node: Any = tree
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


_MISSING = object()


def _get(tree: Any, path: Path) -> Any:
    node = tree
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node


def merge(url: str | None, params: dict[str, Any], options: dict[str, Any],
          secrets: dict[str, Any] | None) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """The clear connection: the public form with its secrets put back."""
    if not secrets:
        return url, params, options
    tree = {"params": copy.deepcopy(params), "options": copy.deepcopy(options)}
    for path, value in secrets.get("values", []):
        _set(tree, tuple(path), value)
    return secrets.get("url", url), tree["params"], tree["options"]


def secret_values(secrets: dict[str, Any] | None) -> list[str]:
    """Every secret of a connection as text (for log masking)."""
    if not secrets:
        return []
    values = [str(value) for _, value in secrets.get("values", [])]
    return values + _split_url(secrets.get("url"))[1]


def _restore_url(incoming: str | None, stored: str | None) -> tuple[str | None, bool]:
    if not incoming or not stored or MASK not in incoming:
        return incoming, False
    try:
        new, old = _Url.parse(incoming), _Url.parse(stored)
    except ValueError:
        return incoming, False
    used = False
    password = new.password
    if password == MASK and old.password:
        password, used = old.password, True
    old_values: dict[str, list[str]] = {}
    for key, _, value in old.query:
        old_values.setdefault(key, []).append(value)
    seen: dict[str, int] = {}
    query = []
    for key, sep, value in new.query:
        index = seen[key] = seen.get(key, -1) + 1
        previous = old_values.get(key, [])
        if value == MASK and index < len(previous) and previous[index]:
            value, used = previous[index], True
        query.append((key, sep, value))
    fragment = new.fragment
    if fragment == MASK and old.fragment:
        fragment, used = old.fragment, True
    return _Url(new.scheme, new.user, password, new.host, new.path, query, fragment).text(), used


def restore(kind: str, url: str | None, params: dict[str, Any], stored_url: str | None,
            stored_params: dict[str, Any]) -> tuple[str | None, dict[str, Any], bool]:
    """`url` and `params` with each mask at a secret place replaced by the stored secret there;
    the flag says whether any stored secret was kept."""
    restored_url, used = _restore_url(url, stored_url)
    found: list[tuple[Path, Any]] = []
    _mask(PARAMS.get(kind), params, (), found)
    restored = copy.deepcopy(params)
    for path, value in found:
        previous = _get(stored_params, path)
        if value == MASK and previous is not _MISSING and previous not in (None, ""):
            _set(restored, path, previous)
            used = True
    return restored_url, restored, used


@cache
def secret_field_names() -> frozenset[str]:
    """The names of the text fields any schema marks secret (for masking `name=value` in logs); secret
    objects (`headers`) are left out, their values are masked where they appear."""
    names: set[str] = set()

    def walk(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            if _is_secret(field) and dict not in {get_origin(a) for a in get_args(field.annotation)}:
                names.add(name)
            elif (sub := _submodel(field.annotation)) is not None:
                walk(sub)

    for model in PARAMS.values():
        walk(model)
    return frozenset(names)

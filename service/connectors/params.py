"""What every connection's `params` model shares: unknown keys refused, secrets marked, and where a
connection's secrets are sent. Each kind declares its own model in `<kind>/params.py` (docs/spec.md §3,
§7); the registry lists them (`service.connectors.registry.PARAMS`).

Every key a connector reads is declared in its model, and nothing else is accepted: a misspelt key
(`delimeter`) is refused when the connection is created or edited, instead of silently falling back
to a default. Fields that carry secrets are marked in the schema (`json_schema_extra={"secret": True}`,
like Airbyte's `airbyte_secret`); masking on the way out and the encrypted split at rest are derived
from those marks (`service/catalog/redaction.py`), never from a list of key names. A secret field
holding an object (http `headers`, `query`) makes each of its values a secret.

The URL is part of the schema too (`UrlForm`: the schemes a kind accepts, so `postgresq://` is refused
at creation naming `postgresql://`, instead of failing the first run): its password is a secret for every
type, and so is every value of its query string (`?key=`, `sig`, `sslpassword`…), since a query is how
APIs and drivers take credentials. `destination()` names where a connection's secrets are sent, so an
edit that moves the connection elsewhere must supply them again.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.messages import (
    field_problem,
    not_a_param_of,
    url_required,
    url_scheme_unexpected,
    validation_problem,
)

SECRET: dict[str, Any] = {"secret": True}
"""The schema mark of a secret-bearing field."""


def secret(description: str) -> Any:
    """A secret-bearing optional field."""
    return Field(default=None, description=description, json_schema_extra=SECRET)


@dataclass(frozen=True)
class UrlForm:
    """What a kind's `url` looks like: the schemes it accepts (`postgresql://…`), an example for the docs and
    forms, whether a connection needs one, and whether a value without `scheme://` is accepted too (a
    Kafka `host:port` list, a file path)."""

    schemes: tuple[str, ...]
    example: str
    required: bool = True
    bare: bool = False

    def problem(self, kind: str, url: str | None) -> str | None:
        """Why `url` does not fit this form, or None. The URL itself is never echoed (it may hold a password)."""
        if not url:
            return url_required(kind, self.example) if self.required else None
        if "://" not in url:
            return None if self.bare else url_scheme_unexpected(kind, self.schemes, None)
        scheme = _SCHEME.match(url)
        if scheme is None or scheme.group(1) not in self.schemes:
            return url_scheme_unexpected(kind, self.schemes, scheme.group(1) if scheme else None)
        return None


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")


class ParamsModel(BaseModel):
    """Base of every params model: unknown keys are errors; field names are the wire's camelCase."""

    model_config = ConfigDict(extra="forbid")
    kind: ClassVar[str]
    """The connection type's name (`Endpoint.type`), spelt here once for the whole package."""
    default_ports: ClassVar[Mapping[str, int]] = {}
    """The port a URL of each scheme means when it names none (so `host` and `host:5432` are one place)."""
    url_form: ClassVar[UrlForm | None] = None
    """The connection's `url` (None: the kind takes none)."""
    table_means: ClassVar[str] = ""
    """What a batch's `source.table` / `target.table` names on a connection of this kind (docs, forms)."""

    def destination(self, url: str | None) -> tuple[Any, ...]:
        """Where this connection's secrets go: type, host, port and user of its URL."""
        return (self.kind, *url_destination(url, self.default_ports))


Columns = list[str | dict[str, Any]] | dict[str, Any] | None
"""Declared columns: names, `{name, kind}` objects or `{name: kind}` (files, HTTP, Kafka)."""


class ParamsInvalid(ValueError):
    """A connection's params do not fit its type's schema; the message names the key (no `参数错误：`)."""


def validate(model: type[ParamsModel], params: dict[str, Any], options: dict[str, Any] | None = None,
             url: str | None = None, *, check_url: bool = True) -> ParamsModel:
    """The params as `model`, or ParamsInvalid naming the first offending key, then the URL when it does
    not fit the kind's form (`check_url=False`: the params alone).

    No connector reads `options`, so any key there is unknown too.
    """
    kind = model.kind
    for key in options or {}:
        raise ParamsInvalid(not_a_param_of(f"options.{key}", kind))
    try:
        valid = model.model_validate(params)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(["params", *(str(part) for part in first["loc"])])
        if first["type"] == "extra_forbidden":
            raise ParamsInvalid(not_a_param_of(where, kind)) from error
        raise ParamsInvalid(field_problem(where, validation_problem(first))) from error
    if check_url and model.url_form is not None and (problem := model.url_form.problem(kind, url)) is not None:
        raise ParamsInvalid(problem)
    return valid


def url_destination(url: str | None, default_ports: Mapping[str, int] | None = None) -> tuple[Any, ...]:
    """Host, port and user of a URL; a URL that cannot be parsed stands for itself."""
    try:
        parts = urlsplit(url or "")
        port = parts.port or (default_ports or {}).get(parts.scheme.split("+")[0].lower())
        return ((parts.hostname or "").lower(), port, parts.username)
    except ValueError:
        return (url,)

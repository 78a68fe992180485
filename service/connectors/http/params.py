"""The params of an HTTP API connection: headers and auth (secrets), paging, where records are."""

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.connectors.params import Columns, ParamsModel, UrlForm, secret, url_destination


class HttpAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["bearer", "basic"]
    token: str | None = secret("Bearer token")
    username: str | None = None
    password: str | None = secret("Basic auth password")


class HttpPagination(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["page", "offset", "cursor", "link", "none"] = "none"
    pageParam: str | None = None
    offsetParam: str | None = None
    limitParam: str | None = None
    cursorParam: str | None = None
    sizeParam: str | None = None
    start: int | None = None
    pageSize: int | None = None
    nextCursorPath: str | None = None
    nextLinkPath: str | None = None


HeaderName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")]
"""An RFC 9110 token: a header name that cannot smuggle a second header or a line break."""
HeaderValue = Annotated[str, StringConstraints(pattern=r"^[\x20-\x7e\t]{0,8192}$")]
"""Visible ASCII, spaces and tabs: what every HTTP/1.1 stack sends as-is (no CR/LF, no raw UTF-8)."""


class HttpParams(ParamsModel):
    kind: ClassVar[str] = "http"
    default_ports: ClassVar[Mapping[str, int]] = {"http": 80, "https": 443}
    url_form: ClassVar[UrlForm | None] = UrlForm(("https", "http"), "https://api.example.com/v1")
    table_means: ClassVar[str] = ("A path segment appended to the URL (`orders` reads `<url>/orders`); with "
                                  "`tableAsPath: false` the URL is read as it is and the table is a label")
    headers: dict[HeaderName, HeaderValue] | None = secret(
        "Request headers; every value is a secret (custom auth headers)")
    auth: HttpAuth | None = None
    query: dict[str, Any] | None = secret("Query parameters added to every request; every value is a secret")
    timeout: float | None = Field(default=None, gt=0)
    maxRetries: int | None = Field(default=None, ge=0)
    maxRetryAfter: float | None = Field(default=None, ge=0)
    pagination: HttpPagination | None = None
    recordsPath: str | None = None
    totalPath: str | None = None
    columns: Columns = None
    tableAsPath: bool | None = None

    def destination(self, url: str | None) -> tuple[Any, ...]:
        """Scheme too: a secret for `https://host` must not go to `http://host` in clear."""
        return (self.kind, urlsplit(url or "").scheme.lower(), *url_destination(url, self.default_ports))

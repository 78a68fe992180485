"""The params of an HTTP API connection: headers and auth (secrets), paging, where records are."""

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.connectors.params import Columns, ParamsModel, UrlForm, secret, url_destination


class HttpAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["bearer", "basic"] = Field(description="`bearer` sends `token`; `basic` sends username and password")
    token: str | None = secret("Bearer token")
    username: str | None = Field(default=None, description="Basic auth user")
    password: str | None = secret("Basic auth password")


class HttpPagination(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["page", "offset", "cursor", "link", "none"] = Field(
        default="none", description="How the next page is asked for (default `none`: one response)")
    pageParam: str | None = Field(default=None, description="`page`: the page-number query parameter (default `page`)")
    offsetParam: str | None = Field(default=None, description="`offset`: the offset query parameter (default `offset`)")
    limitParam: str | None = Field(default=None, description="`offset`: the page-size query parameter")
    cursorParam: str | None = Field(default=None, description="`cursor`: the cursor query parameter (default `cursor`)")
    sizeParam: str | None = Field(default=None, description="The page-size query parameter (page, cursor)")
    start: int | None = Field(default=None, description="The first page number or offset (default 1 or 0)")
    pageSize: int | None = Field(default=None, description="Records asked per page; a shorter page ends the read")
    nextCursorPath: str | None = Field(default=None, description="`cursor`: where the next cursor is (`meta.next`)")
    nextLinkPath: str | None = Field(
        default=None, description="`link`: where the next URL is (`links.next`); default the `Link` header")


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
    auth: HttpAuth | None = Field(default=None, description="Bearer token or basic auth (secrets)")
    query: dict[str, Any] | None = secret("Query parameters added to every request; every value is a secret")
    timeout: float | None = Field(default=None, gt=0, description="Seconds per request (default 30)")
    maxRetries: int | None = Field(default=None, ge=0,
                                   description="Retries of a 429/503 or dropped request (default 5)")
    maxRetryAfter: float | None = Field(default=None, ge=0,
                                        description="Longest `Retry-After` honoured, in seconds (default 60)")
    pagination: HttpPagination | None = Field(default=None, description="How pages are followed (default one response)")
    recordsPath: str | None = Field(default=None,
                                    description="Where the records are in a response (`data.items`); default the body")
    totalPath: str | None = Field(default=None, description="Where the total count is, for progress (`meta.total`)")
    columns: Columns = Field(default=None, description="Declared columns; default learned from the first page")
    tableAsPath: bool | None = Field(default=None,
                                     description="Append the batch's table to the URL path (default true)")

    def destination(self, url: str | None) -> tuple[Any, ...]:
        """Scheme too: a secret for `https://host` must not go to `http://host` in clear."""
        return (self.kind, urlsplit(url or "").scheme.lower(), *url_destination(url, self.default_ports))

"""HTTP JSON APIs: the client (headers, bearer/basic auth, timeouts), polite retries (429/503 honour
Retry-After within a bound) and the boundary where httpx's errors become our SyncError taxonomy.

Shared by the HTTP source (`http/source.py`) and the connection check. Nothing here logs or raises a
header, a query string or a credential: errors name the URL path only.

Every connection goes through `http_transport.PolicyTransport`, so the access policy approves (and pins)
the address of the first request, of each of at most `MAX_REDIRECTS` redirect hops and of every next-page
link. Only http and https are spoken, on every hop, and a hop to another host leaves the connection's
headers (its credentials) behind.
"""

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from schemas.messages import (
    HTTP_AUTH_TYPE,
    HTTP_NUMBERS,
    HTTP_RATE_LIMITED,
    HTTP_SCHEME_REFUSED,
    HTTP_URL_INVALID,
    HTTP_URL_SCHEME,
    http_not_json,
    http_status,
    http_too_many_redirects,
)
from service.connectors.http.transport import PolicyTransport
from service.security.network import NetworkPolicy
from service.sync.errors import (
    AccessDenied,
    AuthFailed,
    ConfigInvalid,
    ConnectRefused,
    ConnectTimeout,
    SourceFailed,
    SyncError,
    TableMissing,
    TransientSourceError,
)
from service.sync.model import Endpoint

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_MAX_RETRY_AFTER = 60.0
"""Longest single wait a Retry-After may impose; a server asking for more is waited on this long."""
_RETRY_STATUSES = {429, 502, 503, 504}
MAX_REDIRECTS = 5
SCHEMES = ("http", "https")


@dataclass(frozen=True)
class HttpSettings:
    url: str
    headers: dict[str, str]
    auth: httpx.Auth | None
    query: dict[str, Any]
    timeout: float
    max_retries: int
    max_retry_after: float
    network: NetworkPolicy
    """Which addresses this connection may reach (the endpoint's policy)."""


def settings_of(endpoint: Endpoint) -> HttpSettings:
    """The connection's `url` and `params` (headers, auth, query, timeout, maxRetries), validated."""
    url = (endpoint.url or "").strip()
    if not url.startswith(("http://", "https://")):
        raise ConfigInvalid(HTTP_URL_SCHEME)
    _check_url(url)
    params = endpoint.params or {}
    headers = {str(k): str(v) for k, v in (params.get("headers") or {}).items()}
    auth: httpx.Auth | None = None
    spec = params.get("auth") or {}
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "bearer":
        headers["Authorization"] = f"Bearer {spec.get('token', '')}"
    elif kind == "basic":
        auth = httpx.BasicAuth(str(spec.get("username", "")), str(spec.get("password", "")))
    elif spec:
        raise ConfigInvalid(HTTP_AUTH_TYPE)
    try:
        return HttpSettings(
            url=url,
            headers=headers,
            auth=auth,
            query=dict(params.get("query") or {}),
            timeout=float(params.get("timeout") or DEFAULT_TIMEOUT),
            max_retries=int(params.get("maxRetries", DEFAULT_MAX_RETRIES)),
            max_retry_after=float(params.get("maxRetryAfter", DEFAULT_MAX_RETRY_AFTER)),
            network=endpoint.policy.network,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigInvalid(HTTP_NUMBERS) from exc


def _check_url(url: str) -> None:
    """A URL httpx can send: a host, and a port in range (httpx itself accepts 99999 and fails later)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ConfigInvalid(HTTP_URL_INVALID) from exc
    if not parsed.host or (parsed.port is not None and not 0 < parsed.port < 65536):
        raise ConfigInvalid(HTTP_URL_INVALID)


def client_for(settings: HttpSettings, connect_timeout: float) -> httpx.AsyncClient:
    """A client whose every connection the policy approved; see the module docstring."""
    timeout = httpx.Timeout(settings.timeout, connect=connect_timeout)
    return httpx.AsyncClient(headers=settings.headers, auth=settings.auth, timeout=timeout, follow_redirects=True,
                             max_redirects=MAX_REDIRECTS, transport=PolicyTransport(settings.network),
                             trust_env=False, event_hooks={"request": [_every_hop(settings)]})


def _every_hop(settings: HttpSettings) -> Callable[[httpx.Request], Awaitable[None]]:
    """A request hook, run by httpx before the first request and before each redirect hop: refuse any
    scheme but http(s), and drop the connection's headers on a hop to another host (httpx itself drops
    only `Authorization` there, so an API-key header would follow the redirect)."""
    home = (urlsplit(settings.url).hostname or "").lower()
    names = list(settings.headers)

    async def hook(request: httpx.Request) -> None:
        if request.url.scheme not in SCHEMES:
            raise AccessDenied(HTTP_SCHEME_REFUSED, detail=request.url.scheme)
        if request.url.host.lower() != home:
            for name in names:
                request.headers.pop(name, None)
            request.headers.pop("Authorization", None)

    return hook


def path_of(url: str) -> str:
    """The part of a URL safe to show: its path (never the host's credentials or the query)."""
    return urlsplit(url).path or "/"


def retry_after(response: httpx.Response, attempt: int, bound: float) -> float:
    """Seconds to wait before retrying: the server's Retry-After (seconds or an HTTP date), else
    jittered exponential back-off; never more than `bound`."""
    header = response.headers.get("Retry-After", "").strip()
    wait: float | None = None
    if header.isdigit():
        wait = float(header)
    elif header:
        try:
            wait = max(0.0, email.utils.parsedate_to_datetime(header).timestamp() - time.time())
        except (TypeError, ValueError):
            wait = None
    if wait is None:
        wait = random.uniform(0, min(bound, 0.25 * 2**attempt))
    return min(wait, bound)


async def get(
    client: httpx.AsyncClient, settings: HttpSettings, url: str, params: dict[str, Any], *, first: bool,
    connect_timeout: float,
) -> httpx.Response:
    """GET with the retry policy; the first request of a run must answer within the connect timeout
    (a host that accepts and never answers is 连接超时, not a hang), later ones within `timeout`."""
    timeout = httpx.Timeout(connect_timeout) if first else httpx.USE_CLIENT_DEFAULT
    attempt = 0
    while True:
        try:
            query = {**settings.query, **params}
            # an empty `params` would wipe the query a next link already carries
            response = await client.get(url, params=query or None, timeout=timeout)
        except httpx.HTTPError as exc:
            raise map_error(exc, first=first) from exc
        if response.status_code not in _RETRY_STATUSES or attempt >= settings.max_retries:
            break
        await response.aclose()
        wait = retry_after(response, attempt, settings.max_retry_after)
        log.info("HTTP %d from %s; retry %d in %.2fs", response.status_code, path_of(url), attempt + 1, wait)
        await asyncio.sleep(wait)
        attempt += 1
    check_status(response, url, first=first)
    return response


def check_status(response: httpx.Response, url: str, *, first: bool) -> None:
    """Map an HTTP status to our errors: 401/403 auth, 404 on the first page a missing source."""
    status = response.status_code
    if status < 400:
        return
    if status in (401, 403, 407):
        raise AuthFailed("source")
    if status == 404 and first:
        raise TableMissing(path_of(url), "source")
    if status == 429:
        raise SourceFailed(HTTP_RATE_LIMITED, detail=f"HTTP {status} {path_of(url)}")
    if status >= 500:
        raise TransientSourceError(detail=f"HTTP {status} {path_of(url)}")
    raise SourceFailed(http_status(status), detail=path_of(url))


def map_error(exc: BaseException, *, first: bool = False) -> SyncError:
    """httpx's transport errors as ours: a connect timeout (or no answer at all to the first request)
    is 连接超时, a refused connection 连接被拒绝, a broken transfer later on is transient."""
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, httpx.ConnectTimeout) or (first and isinstance(exc, httpx.TimeoutException)):
        return ConnectTimeout("source")
    if isinstance(exc, httpx.ConnectError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(exc).lower():
            return ConnectRefused("source")
        return ConnectRefused("source", detail=type(exc).__name__)
    if isinstance(exc, httpx.TooManyRedirects):
        return SourceFailed(http_too_many_redirects(MAX_REDIRECTS), detail=path_of(str(exc.request.url)))
    if isinstance(exc, httpx.TransportError):
        return TransientSourceError(detail=type(exc).__name__)
    return SourceFailed(detail=type(exc).__name__)


def json_body(response: httpx.Response, url: str) -> Any:
    """The decoded body; a body that is not JSON is a terminal error naming the path and content type."""
    try:
        return response.json()
    except ValueError as exc:
        kind = response.headers.get("content-type", "?").split(";")[0]
        raise SourceFailed(http_not_json(path_of(url)), detail=kind) from exc


async def check_connection(endpoint: Endpoint, connect_timeout: float) -> None:
    """GET the base URL with the connection's auth, within the connect timeout; any answer but an auth
    refusal or a server error counts as reachable (an API's root may well be a 404)."""
    settings = settings_of(endpoint)
    async with client_for(settings, connect_timeout) as client:
        try:
            async with asyncio.timeout(connect_timeout * 2):
                response = await client.get(settings.url, params=settings.query or None, timeout=connect_timeout)
        except httpx.HTTPError as exc:
            raise map_error(exc, first=True) from exc
        except TimeoutError as exc:
            raise ConnectTimeout("source") from exc
    if response.status_code in (401, 403, 407):
        raise AuthFailed("source")
    if response.status_code >= 500:
        raise SourceFailed(http_status(response.status_code))

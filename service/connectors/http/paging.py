"""Pagination of a JSON API as a small state machine: each page request is a JSON-serialisable state
(`{"page": 3}`, `{"offset": 200}`, `{"cursor": "abc"}`, `{"url": "…?after=9"}`), so the state of the
page to fetch next can sit in a checkpoint and a resumed run starts there instead of at page one.

`params.pagination` of an http connection:

    {"type": "page",   "pageParam": "page", "sizeParam": "size", "start": 1, "pageSize": 100}
    {"type": "offset", "offsetParam": "offset", "limitParam": "limit", "start": 0, "pageSize": 100}
    {"type": "cursor", "cursorParam": "cursor", "nextCursorPath": "meta.next", "sizeParam": …, "pageSize": …}
    {"type": "link",   "nextLinkPath": "links.next"}   (without nextLinkPath: the `Link: <…>; rel="next"` header)

An empty page always ends page/offset pagination. A short page (fewer records than `pageSize`) ends it
too, but only when `pageSize` is set: then the server was asked for that size, while a server that caps
its pages on its own would otherwise end the sync early and silently.
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from schemas.messages import HTTP_FOREIGN_NEXT_PAGE, HTTP_PAGINATION_NUMBERS, HTTP_PAGINATION_TYPE
from service.connectors.json_records import at_path, is_missing
from service.sync.errors import ConfigInvalid, SourceFailed

State = dict[str, Any]


@dataclass(frozen=True)
class Paging:
    type: str
    param: str | None
    size_param: str | None
    page_size: int | None
    start: Any
    next_path: str | None

    def first(self) -> State:
        if self.type in ("page", "offset"):
            return {self.type: self.start}
        if self.type == "cursor":
            return {"cursor": None}
        if self.type == "link":
            return {"url": None}
        return {}

    def request(self, base: str, state: State) -> tuple[str, dict[str, Any]]:
        """The URL and query parameters of the page `state` stands for."""
        query: dict[str, Any] = {}
        if self.size_param and self.page_size:
            query[self.size_param] = self.page_size
        if self.type in ("page", "offset"):
            query[self.param or self.type] = state[self.type]
        elif self.type == "cursor" and state.get("cursor") is not None:
            query[self.param or "cursor"] = state["cursor"]
        elif self.type == "link" and state.get("url"):
            return state["url"], {}
        return base, query

    def next(self, state: State, url: str, response: httpx.Response, body: Any, count: int) -> State | None:
        """The state of the following page, or None when this page was the last."""
        if self.type in ("page", "offset"):
            if count == 0 or (self.page_size is not None and count < self.page_size):
                return None
            step = 1 if self.type == "page" else count
            return {self.type: state[self.type] + step}
        if self.type == "cursor":
            cursor = at_path(body, self.next_path)
            if is_missing(cursor) or cursor in (None, "") or cursor == state.get("cursor"):
                return None
            return {"cursor": cursor}
        if self.type == "link":
            link = at_path(body, self.next_path) if self.next_path else response.links.get("next", {}).get("url")
            if is_missing(link) or not link:
                return None
            following = urljoin(url, str(link))
            if urlsplit(following).netloc != urlsplit(url).netloc:
                raise SourceFailed(HTTP_FOREIGN_NEXT_PAGE)
            return None if following == url else {"url": following}
        return None


_DEFAULTS = {"page": ("page", "size", 1), "offset": ("offset", "limit", 0), "cursor": ("cursor", None, None),
             "link": (None, None, None), "none": (None, None, None)}


def paging_of(params: dict[str, Any]) -> Paging:
    spec = params.get("pagination") or {"type": "none"}
    kind = spec.get("type", "none") if isinstance(spec, dict) else None
    if kind not in _DEFAULTS:
        raise ConfigInvalid(HTTP_PAGINATION_TYPE)
    param, size_param, start = _DEFAULTS[kind]
    first: Any = spec.get("start", start)
    param = spec.get({"page": "pageParam", "offset": "offsetParam", "cursor": "cursorParam"}.get(kind, ""), param)
    size_param = spec.get("limitParam" if kind == "offset" else "sizeParam", size_param)
    page_size = spec.get("pageSize")
    try:
        return Paging(
            type=kind,
            param=param,
            size_param=size_param,
            page_size=int(page_size) if page_size is not None else None,
            start=int(first) if kind in ("page", "offset") else None,
            next_path=spec.get("nextCursorPath", "meta.next") if kind == "cursor" else spec.get("nextLinkPath"),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigInvalid(HTTP_PAGINATION_NUMBERS) from exc

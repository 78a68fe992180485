"""HTTP JSON APIs as contract source cases, one per pagination style, all against the loopback API of
`tests/support/http_api.py` (bearer auth, records at `data.items`, pages smaller than the chunks and
not aligned with them, so chunks cross page boundaries and resume in the middle of a page)."""

import uuid
from typing import Any

from schemas.api import SourceSpec
from service.sync.model import Endpoint
from tests.contract.harness import FIELDS, Context
from tests.support.http_api import TOKEN, shared_server


class _HttpCase:
    name = "http"
    fields = FIELDS
    pagination: dict[str, Any] = {}

    def __init__(self, ctx: Context) -> None:
        self.server = shared_server()

    def endpoint(self, columns: bool = False) -> Endpoint:
        params: dict[str, Any] = {"pagination": self.pagination, "recordsPath": "data.items",
                                  "auth": {"type": "bearer", "token": TOKEN}, "totalPath": "meta.total"}
        if columns:
            params["columns"] = [{"name": f.name, "kind": f.kind} for f in FIELDS]
        return Endpoint(type="http", url=f"{self.server.url}/api", params=params)

    async def seed(self, table: str, rows: list[dict[str, Any]]) -> tuple[Endpoint, SourceSpec]:
        self.server.add(table, rows)
        # An API with no records has nothing to learn columns from: such a connection declares them.
        return self.endpoint(columns=not rows), SourceSpec(table=table)

    async def missing(self) -> tuple[Endpoint, SourceSpec]:
        return self.endpoint(), SourceSpec(table=f"missing_{uuid.uuid4().hex[:8]}")

    def unreachable(self, port: int) -> Endpoint:
        return Endpoint(type="http", url=f"http://127.0.0.1:{port}/api", params={"pagination": self.pagination})


class HttpPageCase(_HttpCase):
    name = "http-page"
    pagination = {"type": "page", "pageParam": "page", "sizeParam": "size", "start": 1, "pageSize": 300}


class HttpOffsetCase(_HttpCase):
    name = "http-offset"
    pagination = {"type": "offset", "offsetParam": "offset", "limitParam": "limit", "pageSize": 350}


class HttpCursorCase(_HttpCase):
    name = "http-cursor"
    pagination = {"type": "cursor", "cursorParam": "cursor", "nextCursorPath": "meta.next", "sizeParam": "size",
                  "pageSize": 400}


class HttpLinkCase(_HttpCase):
    name = "http-link"
    pagination = {"type": "link"}
    """The server's default page (100) and its `Link: <…>; rel="next"` header."""


SOURCE_CASES = [HttpPageCase, HttpOffsetCase, HttpCursorCase, HttpLinkCase]

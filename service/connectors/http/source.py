"""HTTP JSON API source: pages of records (page number, offset, cursor or next link) cut into chunks of
`chunkSize` records whatever the page size, each chunk carrying the page to fetch next and how many of
its records were already emitted, so a resumed run starts at that page instead of page one.

A batch's `table` is a path appended to the connection's `url` (`url` `https://api.example/v1` and table
`orders` read `https://api.example/v1/orders`); with `params.tableAsPath: false` the `url` is read as it
is and the table is only a label. `params.recordsPath` (`data.items`) points at the records inside each
response; without it the response itself must be the list. Columns come from `params.columns` or the
keys of the first page's records, with kinds from their JSON types.

No incremental window: an API cannot be asked for "cursor > x" in a general way, so `cursorColumn` is
refused as a configuration error (capability `cursor=False`) rather than silently reading everything.
"""

import logging
from collections.abc import AsyncIterator
from typing import Any, Self

import httpx
from typing_extensions import override

from schemas.api import SourceSpec
from schemas.messages import (
    HTTP_NO_RECORDS,
    HTTP_SOURCE_NEEDS_TABLE,
    HTTP_SOURCE_NO_CURSOR,
    HTTP_WHOLE_RESPONSE,
    http_records_not_objects,
    http_records_path_missing,
)
from service.connectors.base import Capabilities, Chunk, Column, Position, SelectItem, Source, TargetTypes
from service.connectors.http.client import client_for, get, json_body, path_of, settings_of
from service.connectors.http.paging import State, paging_of
from service.connectors.json_records import at_path, declared_columns, is_missing, learned_columns, row_decoder
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.model import Endpoint

log = logging.getLogger(__name__)


class HttpSource(Source):
    capabilities = Capabilities()

    def __init__(self, endpoint: Endpoint, spec: SourceSpec, connect_timeout: float) -> None:
        if spec.table is None:
            raise ConfigInvalid(HTTP_SOURCE_NEEDS_TABLE)
        self._spec, self._timeout = spec, connect_timeout
        self._settings = settings_of(endpoint)
        params = endpoint.params or {}
        self._paging = paging_of(params)
        self._records_path: str | None = params.get("recordsPath")
        self._total_path: str | None = params.get("totalPath")
        self._declared = params.get("columns")
        base = self._settings.url
        if params.get("tableAsPath", True):
            base = base.rstrip("/") + "/" + spec.table.lstrip("/")
        self._base = base
        self._client: httpx.AsyncClient | None = None
        self._columns: list[str] = []
        self._first: tuple[State, list[dict[str, Any]], State | None] | None = None
        self._total: int | None = None
        self._fetched = 0

    async def __aenter__(self) -> Self:
        self._client = client_for(self._settings, self._timeout)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "source used outside its context"
        return self._client

    async def _page(self, state: State) -> tuple[list[dict[str, Any]], State | None]:
        """One page's records and the state of the page after it."""
        url, query = self._paging.request(self._base, state)
        first = self._fetched == 0
        response = await get(self.client, self._settings, url, query, first=first, connect_timeout=self._timeout)
        self._fetched += 1
        body = json_body(response, url)
        records = at_path(body, self._records_path)
        if is_missing(records):
            raise SourceFailed(http_records_path_missing(str(self._records_path)), detail=path_of(url))
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise SourceFailed(http_records_not_objects(self._records_path or HTTP_WHOLE_RESPONSE))
        if first and self._total_path:
            total = at_path(body, self._total_path)
            self._total = total if isinstance(total, int) and not isinstance(total, bool) else None
        return records, self._paging.next(state, url, response, body, len(records))

    async def describe(self) -> list[Column]:
        if self._spec.cursor_column is not None:
            raise ConfigInvalid(HTTP_SOURCE_NO_CURSOR)
        start = self._paging.first()
        records, following = await self._page(start)
        self._first = (start, records, following)
        if self._declared:
            columns = declared_columns(self._declared)
        else:
            columns = learned_columns(records)
            if not columns:
                raise ConfigInvalid(HTTP_NO_RECORDS)
        self._columns = [c.name for c in columns]
        return columns

    @override
    async def start(self, high_water_mark: Any | None) -> Position:
        return {"request": self._paging.first(), "skip": 0}

    @override
    async def estimate(self, position: Position) -> int | None:
        return self._total

    @override
    def high_water_mark(self, position: Position, previous: Any | None) -> Any | None:
        return None

    @override
    async def chunks(
        self, plan: list[SelectItem], target_types: TargetTypes, position: Position, *, size: int, raw: bool
    ) -> AsyncIterator[Chunk]:
        decode = row_decoder(self._columns, plan, target_types)
        columns = [item.target for item in plan]
        state: State | None = position.get("request")
        skip = int(position.get("skip") or 0)
        rows: list[tuple[Any, ...]] = []
        while state is not None:
            if self._first is not None and self._first[0] == state:
                _, records, following = self._first
            else:
                records, following = await self._page(state)
            self._first = None
            if skip:
                log.debug("http source skips %d records of a page already written", skip)
            for index in range(skip, len(records)):
                rows.append(decode(records[index]))
                if len(rows) == size:
                    done = index + 1 == len(records)
                    at = {"request": following, "skip": 0} if done else {"request": state, "skip": index + 1}
                    yield Chunk(number=0, position=at, columns=columns, rows=rows)
                    rows = []
            state, skip = following, 0
        if rows:
            yield Chunk(number=0, position={"request": None, "skip": 0}, columns=columns, rows=rows)

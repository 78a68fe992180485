"""Pure parts of the HTTP and JSON-record connectors: pagination states, Retry-After, JSON paths, columns
learned from records, and decoding JSON values into what a target column takes."""

import time
from datetime import UTC, date, datetime
from decimal import Decimal
from email.utils import formatdate

import httpx
import pytest

from service.connectors.base import SelectItem, TargetTypes
from service.connectors.http.client import retry_after, settings_of
from service.connectors.http.paging import paging_of
from service.connectors.json_records import at_path, is_missing, learned_columns, row_decoder
from service.connectors.postgresql.types import TYPES as POSTGRESQL
from service.sync.errors import ConfigInvalid, SourceFailed
from service.sync.model import Endpoint

BASE = "http://api.test/v1/orders"


def answer(body=None, headers=None) -> httpx.Response:
    return httpx.Response(200, json=body, headers=headers, request=httpx.Request("GET", BASE))


def test_page_pagination_ends_on_an_empty_page_or_a_short_one_when_the_size_was_asked():
    paging = paging_of({"pagination": {"type": "page", "pageSize": 50}})
    state = paging.first()
    assert state == {"page": 1} and paging.request(BASE, state) == (BASE, {"size": 50, "page": 1})
    assert paging.next(state, BASE, answer(), {}, 50) == {"page": 2}
    assert paging.next(state, BASE, answer(), {}, 49) is None
    unsized = paging_of({"pagination": {"type": "page"}})
    assert unsized.next({"page": 3}, BASE, answer(), {}, 7) == {"page": 4}  # the server may cap its pages
    assert unsized.next({"page": 4}, BASE, answer(), {}, 0) is None


def test_offset_pagination_advances_by_what_came():
    paging = paging_of({"pagination": {"type": "offset", "offsetParam": "skip", "limitParam": "take", "pageSize": 10}})
    assert paging.request(BASE, {"offset": 30}) == (BASE, {"take": 10, "skip": 30})
    assert paging.next({"offset": 30}, BASE, answer(), {}, 10) == {"offset": 40}


def test_cursor_pagination_follows_the_body_and_stops_on_null_or_a_repeat():
    paging = paging_of({"pagination": {"type": "cursor", "cursorParam": "after", "nextCursorPath": "meta.next"}})
    assert paging.request(BASE, paging.first()) == (BASE, {})
    assert paging.next({"cursor": None}, BASE, answer(), {"meta": {"next": "x1"}}, 5) == {"cursor": "x1"}
    assert paging.request(BASE, {"cursor": "x1"}) == (BASE, {"after": "x1"})
    assert paging.next({"cursor": "x1"}, BASE, answer(), {"meta": {"next": None}}, 5) is None
    assert paging.next({"cursor": "x1"}, BASE, answer(), {"meta": {"next": "x1"}}, 5) is None
    assert paging.next({"cursor": "x1"}, BASE, answer(), {}, 5) is None


def test_link_pagination_from_the_body_or_the_header_on_the_same_host_only():
    body = paging_of({"pagination": {"type": "link", "nextLinkPath": "links.next"}})
    assert body.next({"url": None}, BASE, answer(), {"links": {"next": "?p=2"}}, 3) == {"url": BASE + "?p=2"}
    header = paging_of({"pagination": {"type": "link"}})
    linked = answer(headers={"Link": '</v1/orders?p=3>; rel="next"'})
    assert header.next({"url": None}, BASE, linked, {}, 3) == {"url": "http://api.test/v1/orders?p=3"}
    assert header.request(BASE, {"url": "http://api.test/v1/orders?p=3"}) == ("http://api.test/v1/orders?p=3", {})
    elsewhere = answer(headers={"Link": '<http://evil.test/steal>; rel="next"'})
    with pytest.raises(SourceFailed):
        header.next({"url": None}, BASE, elsewhere, {}, 3)


def test_unknown_pagination_is_a_configuration_error():
    with pytest.raises(ConfigInvalid):
        paging_of({"pagination": {"type": "scroll"}})


def test_retry_after_in_seconds_as_a_date_and_bounded():
    assert retry_after(httpx.Response(429, headers={"Retry-After": "3"}), 0, 60) == 3
    assert retry_after(httpx.Response(429, headers={"Retry-After": "120"}), 0, 10) == 10
    dated = retry_after(httpx.Response(429, headers={"Retry-After": formatdate(time.time() + 5, usegmt=True)}), 0, 60)
    assert 3 <= dated <= 5
    assert retry_after(httpx.Response(503, headers={"Retry-After": "soon"}), 1, 60) <= 0.5


def test_auth_settings_and_their_validation():
    bearer = settings_of(Endpoint(type="http", url=BASE, params={"auth": {"type": "bearer", "token": "t0k"}}))
    assert bearer.headers["Authorization"] == "Bearer t0k"
    basic = settings_of(Endpoint(type="http", url=BASE, params={"auth": {"type": "basic", "username": "u",
                                                                           "password": "p"}}))
    assert isinstance(basic.auth, httpx.BasicAuth)
    with pytest.raises(ConfigInvalid):
        settings_of(Endpoint(type="http", url="ftp://x", params={}))
    with pytest.raises(ConfigInvalid):
        settings_of(Endpoint(type="http", url=BASE, params={"auth": {"type": "digest"}}))


@pytest.mark.parametrize("url", ["http://[::1", "http://host:99999/", "http://host:-1/", "http:///path", "http://\x00h/"])
def test_urls_httpx_cannot_send_are_configuration_errors(url):
    with pytest.raises(ConfigInvalid):
        settings_of(Endpoint(type="http", url=url))


def test_json_paths():
    doc = {"data": {"items": [1, 2]}, "list": [{"a": 1}]}
    assert at_path(doc, "data.items") == [1, 2]
    assert at_path(doc, "list.0.a") == 1
    assert at_path(doc, None) is doc
    assert is_missing(at_path(doc, "data.rows"))


def test_learned_columns_keep_first_seen_order_and_leave_strings_to_the_target():
    columns = learned_columns([{"id": 1, "name": "a", "x": None}, {"x": 1.5, "tags": ["t"], "ok": True}])
    assert [(c.name, c.kind) for c in columns] == [("id", "int"), ("name", None), ("x", "float"),
                                                   ("tags", "json"), ("ok", "bool")]


def test_values_are_decoded_by_the_target_columns_type():
    names = ["id", "amount", "at", "day", "blob", "doc", "paid", "text"]
    plan = [SelectItem(target=n, source=n, cast=None) for n in names]
    types = {"id": "bigint", "amount": "numeric(14,2)", "at": "timestamp with time zone", "day": "date",
             "blob": "bytea", "doc": "jsonb", "paid": "boolean", "text": "text"}
    decode = row_decoder(names, plan, TargetTypes(types, POSTGRESQL))
    row = decode({"id": 7, "amount": "-12.50", "at": "2026-01-01T08:30:00+08:00", "day": "2026-02-03",
                  "blob": "AAH/Cg==", "doc": {"n": 1}, "paid": True, "text": {"k": "中"}})
    assert row == (7, Decimal("-12.50"), datetime(2026, 1, 1, 0, 30, tzinfo=UTC), date(2026, 2, 3),
                   b"\x00\x01\xff\n", '{"n": 1}', True, '{"k": "中"}')
    assert decode({"id": None})[0] is None
    with pytest.raises(SourceFailed) as error:
        decode({"amount": "twelve"})
    assert error.value.reason == "字段转换失败：amount"

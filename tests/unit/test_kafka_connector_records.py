"""How the Kafka target writes rows as JSON records and keys, and which topic a batch names."""

import base64
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from service.connectors.kafka.client import settings_of, topic_of
from service.connectors.kafka.target import encode, key_of
from service.sync.errors import ConfigInvalid
from service.sync.model import Endpoint


def test_a_row_becomes_a_json_object_with_strings_for_what_json_cannot_carry():
    columns = ["id", "amount", "at", "day", "blob", "doc", "text"]
    row = (1, Decimal("-0.50"), datetime(2026, 1, 1, 8, 30, tzinfo=UTC), date(2026, 1, 2), b"\x00\xff",
           '{"n": [1, "中"]}', '{"looks": "like json"}')
    record = json.loads(encode(columns, {"doc"}, row))
    assert record == {"id": 1, "amount": "-0.50", "at": "2026-01-01T08:30:00+00:00", "day": "2026-01-02",
                      "blob": base64.b64encode(b"\x00\xff").decode(), "doc": {"n": [1, "中"]},
                      "text": '{"looks": "like json"}'}


def test_keys_are_one_value_as_text_or_several_as_a_json_array():
    row = (42, "北京", None)
    assert key_of([], row) is None
    assert key_of([0], row) == b"42"
    assert key_of([1], row) == "北京".encode()
    assert json.loads(key_of([0, 1], row) or b"") == [42, "北京"]


def test_a_pinned_topic_wins_and_the_table_names_it_otherwise():
    pinned = settings_of(Endpoint(type="kafka", params={"bootstrap": "h:9092", "topic": "orders.v1-raw"}))
    assert topic_of(pinned, "label") == "orders.v1-raw"
    open_ = settings_of(Endpoint(type="kafka", params={"bootstrap": "h:9092", "key": ["a", "b"]}))
    assert topic_of(open_, "orders") == "orders" and open_.key == ["a", "b"]
    with pytest.raises(ConfigInvalid):
        settings_of(Endpoint(type="kafka", params={}))


@pytest.mark.parametrize("bootstrap", ["h", "h:x", "h:0", "h:99999", "h:-1", "a b:9092", "h\x00:9092", "h:9092,"])
def test_a_bootstrap_list_that_cannot_be_connected_to_is_a_configuration_error(bootstrap):
    with pytest.raises(ConfigInvalid):
        settings_of(Endpoint(type="kafka", params={"bootstrap": bootstrap}))

"""What is secret in a connection follows its type's schema: masked in the public form, kept on a round trip."""

import pytest

from service.catalog.redaction import MASK, merge, restore, secret_field_names, secret_values, split
from service.connectors.params import ParamsInvalid
from service.connectors.registry import json_schemas
from service.connectors.registry import validate_params as validate


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://user:pw@host:5432/db", f"postgresql://user:{MASK}@host:5432/db"),
    ("mysql://root:p%40ss@db.local/app", f"mysql://root:{MASK}@db.local/app"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("sqlite:///data/file.db", "sqlite:///data/file.db"),
    ("https://api.example.com/items?page=1&key=abc&sig=s1", f"https://api.example.com/items?page={MASK}&key={MASK}&sig={MASK}"),
    ("postgresql://u@h/db?passphrase=x&pw=y", f"postgresql://u@h/db?passphrase={MASK}&pw={MASK}"),
    (None, None),
])
def test_url_passwords_and_every_query_value_are_masked(url: str | None, expected: str | None) -> None:
    assert split("postgresql", url, {}).url == expected


def test_schema_marked_fields_are_masked_and_the_rest_kept() -> None:
    params = {"headers": {"X-Api-Key": "k-123", "Accept": "json"}, "auth": {"type": "bearer", "token": "t-1"},
              "pagination": {"type": "page", "pageSize": 10}, "recordsPath": "data"}
    public = split("http", "https://api.example/v1", params)
    assert public.params == {"headers": {"X-Api-Key": MASK, "Accept": MASK}, "auth": {"type": "bearer", "token": MASK},
                             "pagination": {"type": "page", "pageSize": 10}, "recordsPath": "data"}
    assert public.url == "https://api.example/v1"
    assert merge(public.url, public.params, public.options, public.secrets) == ("https://api.example/v1", params, {})
    assert params["headers"]["X-Api-Key"] == "k-123"


def test_kafka_sasl_password_is_secret_and_the_user_is_not() -> None:
    public = split("kafka", None, {"bootstrap": "b:9092", "saslUsername": "svc", "saslPassword": "s3cret"})
    assert public.params == {"bootstrap": "b:9092", "saslUsername": "svc", "saslPassword": MASK}
    assert secret_values(public.secrets) == ["s3cret"]


def test_nothing_secret_stores_no_secrets() -> None:
    assert split("csv", None, {"path": "/data", "delimiter": ";"}).secrets is None


def test_keys_no_schema_declares_count_as_secret_in_old_rows() -> None:
    public = split("postgresql", "postgresql://u@h/db", {"conn_str": "Password=x", "pw": 7}, {"sslmode": "prefer"})
    assert public.params == {"conn_str": MASK, "pw": MASK} and public.options == {"sslmode": MASK}
    assert merge(public.url, public.params, public.options, public.secrets) == (
        "postgresql://u@h/db", {"conn_str": "Password=x", "pw": 7}, {"sslmode": "prefer"})


def test_a_mask_sent_back_keeps_the_stored_secret() -> None:
    stored_url, stored = "https://u:p%40ss@api.example/v1?key=abc", {"headers": {"X-Token": "xyz"}, "timeout": 5}
    public = split("http", stored_url, stored)
    url, params, kept = restore("http", public.url, {**public.params, "timeout": 9}, stored_url, stored)
    assert (url, params, kept) == (stored_url, {"headers": {"X-Token": "xyz"}, "timeout": 9}, True)


def test_new_secrets_replace_the_stored_ones() -> None:
    url, params, kept = restore("http", "https://api.example/v1?key=new", {"headers": {"X-Token": "new"}},
                                "https://api.example/v1?key=old", {"headers": {"X-Token": "old"}})
    assert (url, params, kept) == ("https://api.example/v1?key=new", {"headers": {"X-Token": "new"}}, False)


def test_a_mask_in_a_plain_field_is_just_text() -> None:
    _, params, kept = restore("csv", None, {"nullValue": MASK}, None, {"nullValue": "NULL"})
    assert params == {"nullValue": MASK} and not kept


@pytest.mark.parametrize(("kind", "params", "message"), [
    ("csv", {"path": "/d", "delimeter": ";"}, "params.delimeter 不是 csv 连接可用的参数"),
    ("postgresql", {"passphrase": "x"}, "params.passphrase 不是 postgresql 连接可用的参数"),
    ("http", {"auth": {"type": "bearer", "tokn": "x"}}, "params.auth.tokn 不是 http 连接可用的参数"),
    ("http", {"pagination": {"type": "pages"}}, "params.pagination.type：取值须为"),
    ("csv", {"header": "maybe"}, "params.header：应为布尔值"),
])
def test_unknown_or_invalid_keys_are_named(kind: str, params: dict, message: str) -> None:
    with pytest.raises(ParamsInvalid, match=message):
        validate(kind, params)


def test_options_no_connector_reads_are_refused() -> None:
    with pytest.raises(ParamsInvalid, match="options.sslmode 不是 postgresql 连接可用的参数"):
        validate("postgresql", {}, {"sslmode": "prefer"})


def test_every_type_publishes_a_json_schema_with_its_secrets_marked() -> None:
    schemas = json_schemas()
    assert set(schemas) == {"postgresql", "mysql", "sqlite", "csv", "jsonl", "http", "kafka"}
    assert schemas["kafka"]["properties"]["saslPassword"]["secret"] is True
    assert schemas["http"]["properties"]["headers"]["secret"] is True
    assert schemas["csv"]["additionalProperties"] is False
    assert secret_field_names() == {"password", "token", "saslPassword"}

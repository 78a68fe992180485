"""Secrets are masked on the way out and survive a GET-edit-PUT round trip."""

import pytest

from service.catalog.redaction import MASK, is_secret_key, redact_url, redact_values, restore_url, restore_values


@pytest.mark.parametrize("key", ["password", "PASSWORD", "db_passwd", "pwd", "clientSecret", "access_token",
                                 "apiKey", "api_key", "X-Api-Key", "Authorization", "credentials",
                                 "sasl_plain_password", "privateKey", "auth"])
def test_secret_looking_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["path", "encoding", "delimiter", "header", "topic", "bootstrap", "user",
                                 "username", "pageSize", "keyColumns"])
def test_plain_keys(key: str) -> None:
    assert not is_secret_key(key)


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://user:pw@host:5432/db", f"postgresql://user:{MASK}@host:5432/db"),
    ("mysql://root:p%40ss@db.local/app", f"mysql://root:{MASK}@db.local/app"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("sqlite:///data/file.db", "sqlite:///data/file.db"),
    ("https://api.example.com/items?page=1&token=abc", f"https://api.example.com/items?page=1&token={MASK}"),
    (None, None),
])
def test_redact_url(url: str | None, expected: str | None) -> None:
    assert redact_url(url) == expected


def test_redact_nested_values_and_lists() -> None:
    params = {"path": "/data", "headers": {"Authorization": "Bearer xyz", "Accept": "json"},
              "auth": {"user": "u", "password": "p"}, "items": [{"token": "t", "n": 1}], "password": ""}
    assert redact_values(params) == {
        "path": "/data", "headers": {"Authorization": MASK, "Accept": "json"}, "auth": MASK,
        "items": [{"token": MASK, "n": 1}], "password": "",
    }
    assert params["headers"]["Authorization"] == "Bearer xyz"


def test_masked_values_sent_back_keep_the_stored_secret() -> None:
    stored = {"headers": {"Authorization": "Bearer xyz"}, "password": "old", "items": [{"token": "t"}]}
    incoming = {"headers": {"Authorization": MASK, "Accept": "json"}, "password": "new", "items": [{"token": MASK}]}
    assert restore_values(incoming, stored) == {
        "headers": {"Authorization": "Bearer xyz", "Accept": "json"}, "password": "new", "items": [{"token": "t"}],
    }


def test_masked_url_password_keeps_the_stored_one() -> None:
    stored = "postgresql://user:p%40ss@host:5432/db"
    assert restore_url(redact_url(stored), stored) == stored
    assert restore_url(f"postgresql://user:{MASK}@newhost:5432/db", stored) == "postgresql://user:p%40ss@newhost:5432/db"
    assert restore_url("postgresql://user:fresh@host/db", stored) == "postgresql://user:fresh@host/db"


def test_masked_url_query_secret_keeps_the_stored_one() -> None:
    stored = "https://api.example.com/items?page=1&token=abc"
    assert restore_url(redact_url(stored), stored) == stored


def test_urls_inside_params_are_redacted_and_restored() -> None:
    stored = {"endpoint": "https://svc:hunter2@api.example.com/v1", "path": "/data"}
    redacted = redact_values(stored)
    assert redacted == {"endpoint": f"https://svc:{MASK}@api.example.com/v1", "path": "/data"}
    assert restore_values(redacted, stored) == stored

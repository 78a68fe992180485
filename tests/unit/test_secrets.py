"""Secrets at rest: purpose-bound keys, sealing bound to a place, key ids for rotation."""

import pytest

from service.config import Settings
from service.security.secrets import Keyring, Sealed, SecretKeyMissing, SecretUnreadable, key_id, subkey

KEY, OLD = "current-key-0123456789abcdef", "previous-key-0123456789abcdef"


def test_subkeys_are_bound_to_their_purpose() -> None:
    assert subkey(KEY, "event-signature") != subkey(KEY, "connection-secrets")
    assert subkey(KEY, "event-signature") == subkey(KEY, "event-signature")
    assert len(subkey(KEY, "x")) == 32 and KEY.encode() not in subkey(KEY, "x")


def test_sealed_values_open_only_at_their_place() -> None:
    keys = Keyring(KEY)
    sealed = keys.seal({"url": "postgresql://u:pw@h/db"}, "connection:1")
    assert sealed.key_id == key_id(KEY) and "pw@h" not in sealed.token
    assert keys.open(sealed, "connection:1") == {"url": "postgresql://u:pw@h/db"}
    with pytest.raises(SecretUnreadable):
        keys.open(sealed, "connection:2")
    with pytest.raises(SecretUnreadable):
        keys.open(Sealed(sealed.key_id, sealed.token[:-4] + "AAAA"), "connection:1")


def test_two_seals_of_one_value_differ() -> None:
    keys = Keyring(KEY)
    assert keys.seal("v", "c").token != keys.seal("v", "c").token


def test_previous_keys_open_but_never_seal() -> None:
    old = Keyring(OLD).seal("secret", "connection:1")
    rotated = Keyring(KEY, [OLD])
    assert rotated.open(old, "connection:1") == "secret"
    assert rotated.seal("secret", "connection:1").key_id == key_id(KEY)
    with pytest.raises(SecretUnreadable, match=old.key_id):
        Keyring(KEY).open(old, "connection:1")


def test_settings_give_the_keyring() -> None:
    keys = Keyring.from_settings(Settings(_env_file=None, secret_key=KEY, secret_key_previous=f" {OLD} ,"))
    assert keys.current_id == key_id(KEY)
    assert keys.open(Keyring(OLD).seal(1, "c"), "c") == 1
    assert KEY not in repr(keys)


def test_without_a_key_nothing_is_sealed() -> None:
    with pytest.raises(SecretKeyMissing):
        Keyring().seal("x", "c")


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        Keyring("short")

"""The event signature (docs/spec.md §7): what exactly is signed, which keys verify, and why nothing can be shifted."""

import hashlib
import hmac
from types import SimpleNamespace

import pytest

from schemas.signing import SIGNATURE_HEADER, sign, signature_in, signed_message, verify
from service.config import Settings
from service.security.event_signing import FORGED, PURPOSE, UNSIGNED, EventKeys
from service.security.secrets import SecretKeyMissing, subkey

KEY = b"k" * 32
TOPIC = "integration.batch.sync.events"


def record(value: bytes | None, key: bytes | None = b"5", topic: str = TOPIC, headers=()) -> SimpleNamespace:
    return SimpleNamespace(topic=topic, key=key, value=value, headers=tuple(headers))


def keys_for(secret: str, previous: str | None = None) -> EventKeys:
    return EventKeys.from_settings(Settings(secret_key=secret, secret_key_previous=previous))


def test_the_framing_is_length_prefixed_and_tells_null_from_empty() -> None:
    assert signed_message("t", b"k", b"v") == (b"batchsync-signature/v1" + b"\x00\x00\x00\x01t"
                                              + b"\x00\x00\x00\x01k" + b"\x00\x00\x00\x01v")
    assert signed_message("t", None, b"") == b"batchsync-signature/v1\x00\x00\x00\x01t\xff\xff\xff\xff\x00\x00\x00\x00"
    expected = hmac.new(KEY, signed_message(TOPIC, b"5", b"{}"), hashlib.sha256).hexdigest()
    assert sign(KEY, TOPIC, b"5", b"{}") == expected


@pytest.mark.parametrize(("other_key", "other_value"), [
    (b"51", b"{}"),        # a byte moved from the value into the key
    (b"", b"5{}"),         # ... or from the key into the value
    (None, b"5{}"),
    (b"5", b"{} "),
])
def test_bytes_cannot_move_between_key_and_value(other_key, other_value) -> None:
    signature = sign(KEY, TOPIC, b"5", b"{}")
    assert verify([KEY], TOPIC, b"5", b"{}", signature)
    assert not verify([KEY], TOPIC, other_key, other_value, signature)


def test_a_signature_is_bound_to_its_topic() -> None:
    """A DLQ copy of a forged event is signed by us; copied back into the audit log it must not verify."""
    signature = sign(KEY, "p.dlq", b"5", b"{}")
    assert not verify([KEY], "p.events", b"5", b"{}", signature)


def test_the_event_key_is_a_purpose_subkey_of_the_secret_key() -> None:
    secret = "a-service-secret-of-enough-length"
    keys = keys_for(secret)
    assert keys.current == subkey(secret, PURPOSE)
    assert keys.current not in (secret.encode(), subkey(secret, "connection-secrets"))


def test_our_records_verify_and_others_are_unsigned_or_forged() -> None:
    keys = keys_for("the-current-secret-0123456789")
    headers = keys.signed_headers(TOPIC, b"5", b"{}", {"eventType": "X", SIGNATURE_HEADER: "caller's own"})
    assert [name for name, _ in headers] == ["eventType", SIGNATURE_HEADER]
    assert keys.problem(record(b"{}", headers=headers)) is None
    assert keys.problem(record(b"{}")) == UNSIGNED
    assert keys.problem(record(b'{"recordsSynced": 987654321}', headers=headers)) == FORGED
    assert keys.problem(record(b"{}", headers=[*headers, headers[-1]])) == FORGED  # two signatures: ambiguous
    assert keys.problem(record(b"{}", headers=[(SIGNATURE_HEADER, b"zz")])) == FORGED
    wrong = keys_for("an-attacker-guessed-this-key-1")
    assert keys.problem(record(b"{}", headers=wrong.signed_headers(TOPIC, b"5", b"{}", None))) == FORGED
    assert keys.refusal(record(b"{}")).startswith("unsigned: ")


def test_a_rotated_key_still_verifies_but_no_longer_signs() -> None:
    old, new = "the-old-secret-0123456789", "the-new-secret-0123456789"
    signed_before = keys_for(old).signed_headers(TOPIC, b"5", b"{}", None)
    assert keys_for(new).problem(record(b"{}", headers=signed_before)) == FORGED
    rotated = keys_for(new, previous=f" other-earlier-secret-000 , {old}")
    assert rotated.problem(record(b"{}", headers=signed_before)) is None
    assert rotated.signed_headers(TOPIC, b"5", b"{}", None) == keys_for(new).signed_headers(TOPIC, b"5", b"{}", None)


def test_uppercase_hex_is_the_same_signature_and_junk_is_none() -> None:
    signature = sign(KEY, TOPIC, b"5", b"{}")
    assert signature_in([(SIGNATURE_HEADER, signature.upper().encode())]) == signature
    assert signature_in([(SIGNATURE_HEADER, "é".encode() * 32)]) is None
    assert signature_in([("other", signature.encode())]) is None


def test_no_secret_key_no_signing() -> None:
    with pytest.raises(SecretKeyMissing):
        EventKeys.from_settings(Settings(secret_key=None))

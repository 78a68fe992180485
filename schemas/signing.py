"""The `batchsync-signature` header on the wire (docs/spec.md §7): what bytes are signed and how the header reads.

Pure functions over key material the caller supplies, so producers, consumers, audit replay and other
services can all sign and check the same bytes; where the key comes from is `service.security`'s job.

The signed message is a framing, not a concatenation, so no bytes can move between its parts:

    b"batchsync-signature/v1" || frame(topic) || frame(key) || frame(value)

where `frame(b)` is the 4-byte big-endian length of `b` followed by `b`, and `frame(None)` (a null key
or value, which Kafka tells apart from an empty one) is the 4 bytes `ff ff ff ff`. The topic is part of
the message so a record the service signed for one topic (a DLQ copy of a forged event, say) does not
verify when someone copies it into another (the audit log). The header's value is the lowercase hex
HMAC-SHA256 of that message.
"""

import hashlib
import hmac
from collections.abc import Iterable, Sequence

SIGNATURE_HEADER = "batchsync-signature"
DOMAIN = b"batchsync-signature/v1"
NULL = b"\xff\xff\xff\xff"
HEX_LENGTH = 2 * hashlib.sha256().digest_size

Headers = Sequence[tuple[str, bytes]]
"""Kafka record headers as clients return them: (name, value) pairs, names may repeat."""


def _frame(part: bytes | None) -> bytes:
    if part is None:
        return NULL
    return len(part).to_bytes(4, "big") + part


def signed_message(topic: str, key: bytes | None, value: bytes | None) -> bytes:
    """The exact bytes the HMAC covers."""
    return DOMAIN + _frame(topic.encode()) + _frame(key) + _frame(value)


def sign(signing_key: bytes, topic: str, key: bytes | None, value: bytes | None) -> str:
    """The header value: hex HMAC-SHA256 of the framed topic, key and value."""
    return hmac.digest(signing_key, signed_message(topic, key, value), "sha256").hex()


def signature_in(headers: Headers | None) -> str | None:
    """The record's one signature, or None when it has none, several, or one that is not hex of the right size."""
    found = [value for name, value in (headers or ()) if name == SIGNATURE_HEADER]
    if len(found) != 1 or found[0] is None or len(found[0]) != HEX_LENGTH:
        return None
    try:
        return found[0].decode("ascii").lower()
    except UnicodeDecodeError:
        return None


def has_signature_header(headers: Headers | None) -> bool:
    return any(name == SIGNATURE_HEADER for name, _ in (headers or ()))


def verify(keys: Iterable[bytes], topic: str, key: bytes | None, value: bytes | None, signature: str) -> bool:
    """True when `signature` is the HMAC under any of `keys` (the current one first, then earlier ones)."""
    message = signed_message(topic, key, value)
    expected = signature.encode("ascii", errors="replace")
    return any(hmac.compare_digest(hmac.digest(k, message, "sha256").hex().encode(), expected) for k in keys)

"""The `X-Batchsync-Signature` header: `sha256=<hex HMAC-SHA256 of the body, keyed by BATCHSYNC_SECRET_KEY>`,
the shape GitHub's webhooks made familiar; receivers verify it on the exact bytes they received
(docs/operations.md, "Notifications")."""

import hashlib
import hmac

HEADER = "X-Batchsync-Signature"
PREFIX = "sha256="


def sign(body: bytes, key: str) -> str:
    return PREFIX + hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, key: str, header: str | None) -> bool:
    """True when `header` is the signature of `body` under `key` (compared in constant time)."""
    return header is not None and hmac.compare_digest(sign(body, key), header.strip())

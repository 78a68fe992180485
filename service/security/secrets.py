"""Connection secrets at rest (docs/spec.md §7): AES-GCM under a key derived from `BATCHSYNC_SECRET_KEY`.

The configured secret is never used as a key itself. HKDF derives one key per purpose, so the same
secret encrypts connection secrets (`connection-secrets`) and signs events (`event-signature`)
without the two uses ever sharing key material. Every ciphertext is stored with the id of the key
that sealed it: keys in `BATCHSYNC_SECRET_KEY_PREVIOUS` still open old rows, `batchsync secrets
rotate` re-seals every row under the current key, and the previous keys can then be dropped.

A sealed value is bound to its place (`connection:<id>`) as associated data: a ciphertext copied
onto another row does not open there.
"""

import base64
import binascii
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.config import Settings

ENCRYPTION_PURPOSE = "connection-secrets"
KEY_ID_PURPOSE = "key-id"
MIN_SECRET_LENGTH = 16
NONCE_BYTES = 12


class SecretKeyMissing(RuntimeError):
    """No `BATCHSYNC_SECRET_KEY` is configured, so nothing can be sealed or opened."""


class SecretUnreadable(RuntimeError):
    """A sealed value cannot be opened: its key is not configured, or it was altered or moved."""


def subkey(secret: str | bytes, purpose: str, length: int = 32) -> bytes:
    """`length` bytes for one purpose: HKDF-SHA256 over the secret, no salt, info `batchsync:<purpose>`.

    Different purposes give independent keys, so a key leaked from one use says nothing of another.
    """
    material = secret.encode() if isinstance(secret, str) else secret
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=f"batchsync:{purpose}".encode()).derive(material)


def key_id(secret: str) -> str:
    """A short public name of a secret, stored beside each ciphertext; derived, so it reveals nothing."""
    return subkey(secret, KEY_ID_PURPOSE, 8).hex()


def connection_context(connection_id: int) -> str:
    """The place a connection's secrets are sealed to."""
    return f"connection:{connection_id}"


@dataclass(frozen=True)
class Sealed:
    """A ciphertext as stored: the key id and the token (base64url of nonce + AES-GCM output)."""

    key_id: str
    token: str


@dataclass(frozen=True)
class _Key:
    id: str
    aead: AESGCM


class Keyring:
    """The current key, which seals, and the earlier ones, which only open (until `secrets rotate`)."""

    def __init__(self, current: str | None = None, previous: Sequence[str] = ()) -> None:
        secrets = [current] if current else []
        secrets += [p for p in previous if p and p != current]
        for secret in secrets:
            if len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(f"BATCHSYNC_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters")
        self._current = current or None
        self._keys = {key_id(s): _Key(key_id(s), AESGCM(subkey(s, ENCRYPTION_PURPOSE))) for s in secrets}

    @classmethod
    def from_settings(cls, settings: Settings) -> "Keyring":
        current = settings.secret_key.get_secret_value() if settings.secret_key else None
        return cls(current, settings.previous_secret_keys)

    def __repr__(self) -> str:
        return f"Keyring(current={self.current_id!r}, keys={len(self._keys)})"

    @property
    def configured(self) -> bool:
        return self._current is not None

    @property
    def current_id(self) -> str | None:
        return key_id(self._current) if self._current else None

    def seal(self, value: Any, context: str) -> Sealed:
        """Encrypt a JSON value under the current key, bound to `context` (e.g. `connection:42`)."""
        if self._current is None:
            raise SecretKeyMissing("BATCHSYNC_SECRET_KEY is not set: connection secrets cannot be encrypted")
        key = self._keys[key_id(self._current)]
        nonce = os.urandom(NONCE_BYTES)
        data = key.aead.encrypt(nonce, json.dumps(value, ensure_ascii=False).encode(), context.encode())
        return Sealed(key.id, base64.urlsafe_b64encode(nonce + data).decode())

    def open(self, sealed: Sealed, context: str) -> Any:
        """The JSON value sealed at `context`, with whichever configured key sealed it."""
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise SecretUnreadable(f"secrets sealed with key {sealed.key_id}, which is not configured "
                                   "(BATCHSYNC_SECRET_KEY / BATCHSYNC_SECRET_KEY_PREVIOUS)")
        try:
            raw = base64.urlsafe_b64decode(sealed.token.encode())
            plain = key.aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError, binascii.Error) as error:
            raise SecretUnreadable(f"secrets at {context} were altered or belong elsewhere") from error
        return json.loads(plain)

"""The keys that sign and check the service's own Kafka records (docs/spec.md §7, "the audit log is tamper-evident").

The signing key is derived from `BATCHSYNC_SECRET_KEY` with HKDF for the purpose "event-signature", so
it is never the key that encrypts connection secrets. Each key in `BATCHSYNC_SECRET_KEY_PREVIOUS` still
verifies, so records signed before a rotation stay genuine; only the current key signs.
"""

from dataclasses import dataclass
from typing import Protocol

from schemas.signing import SIGNATURE_HEADER, Headers, has_signature_header, sign, signature_in, verify
from service.config import Settings
from service.security.secrets import SecretKeyMissing, subkey

PURPOSE = "event-signature"
UNSIGNED = "unsigned"
FORGED = "forged"


class BusRecord(Protocol):
    """What a consumed Kafka record offers (aiokafka's ConsumerRecord satisfies it)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True)
class EventKeys:
    current: bytes
    previous: tuple[bytes, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> "EventKeys":
        if settings.secret_key is None or not settings.secret_key.get_secret_value():
            raise SecretKeyMissing("BATCHSYNC_SECRET_KEY is not set: the service cannot sign or check its events")
        return cls(subkey(settings.secret_key.get_secret_value(), PURPOSE),
                   tuple(subkey(earlier, PURPOSE) for earlier in settings.previous_secret_keys))

    def sign(self, topic: str, key: bytes | None, value: bytes | None) -> str:
        return sign(self.current, topic, key, value)

    def signed_headers(self, topic: str, key: bytes | None, value: bytes | None,
                       headers: dict[str, str] | None) -> list[tuple[str, bytes]]:
        """Wire headers for a record we produce: the caller's, with our signature (never the caller's)."""
        wire = [(name, text.encode()) for name, text in (headers or {}).items() if name != SIGNATURE_HEADER]
        return [*wire, (SIGNATURE_HEADER, self.sign(topic, key, value).encode())]

    def problem(self, record: BusRecord) -> str | None:
        """None for a record signed by us (current or earlier key); else `unsigned` or `forged`."""
        signature = signature_in(record.headers)
        if signature is None:
            return FORGED if has_signature_header(record.headers) else UNSIGNED
        keys = (self.current, *self.previous)
        return None if verify(keys, record.topic, record.key, record.value, signature) else FORGED

    def refusal(self, record: BusRecord) -> str | None:
        """A readable reason (the DLQ's and the log's) when `problem` finds one."""
        found = self.problem(record)
        if found == UNSIGNED:
            return f"{UNSIGNED}: no {SIGNATURE_HEADER} header; not written by this service"
        if found == FORGED:
            return f"{FORGED}: {SIGNATURE_HEADER} does not match any service key"
        return None

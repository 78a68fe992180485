"""Parsing a request off the wire: every way it can be wrong becomes one readable DLQ reason."""

import json

from pydantic import ValidationError

from schemas.events import BatchSyncRequested


class InvalidRequest(ValueError):
    pass


def parse_request(value: bytes | None, max_bytes: int) -> BatchSyncRequested:
    if value is None:
        raise InvalidRequest("empty message")
    if len(value) > max_bytes:
        raise InvalidRequest(f"message of {len(value)} bytes exceeds {max_bytes}")
    try:
        payload = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRequest(f"not JSON: {error}") from error
    except RecursionError as error:
        raise InvalidRequest("not JSON: nested too deeply") from error
    if not isinstance(payload, dict) or payload.get("eventType") != "BatchSyncRequested":
        raise InvalidRequest("eventType must be BatchSyncRequested")
    try:
        return BatchSyncRequested.model_validate(payload)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise InvalidRequest(f"invalid BatchSyncRequested: {problems}") from error

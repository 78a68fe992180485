"""How an event travels on the bus: its value bytes, its key and its Kafka headers (docs/spec.md §4, events).

One home for the encoding, so the outbox that stores events, the request-reply client that publishes a
request and every reader agree on the bytes. The signature header is `schemas/signing.py`'s; the DLQ's
headers are named here because the DLQ copy is a wire contract too.
"""

from schemas.events import Event

EVENT_TYPE_HEADER = "eventType"
SCHEMA_VERSION_HEADER = "schemaVersion"
CORRELATION_ID_HEADER = "correlationId"
EVENT_ID_HEADER = "eventId"

DLQ_REASON_HEADER = "dlqReason"
DLQ_SOURCE_TOPIC_HEADER = "dlqSourceTopic"
DLQ_SOURCE_PARTITION_HEADER = "dlqSourcePartition"
DLQ_SOURCE_OFFSET_HEADER = "dlqSourceOffset"
DLQ_SOURCE_SIGNATURE_HEADER = "dlqSourceSignature"
"""The signature the parked record carried: kept for the investigation, never passed on as the copy's own."""


def encode(event: Event) -> bytes:
    """The record value: the event's JSON with its wire (camelCase) names."""
    return event.model_dump_json(by_alias=True).encode()


def event_key(event: Event) -> bytes:
    """The usual record key, the batch id, so one batch's events stay in order on one partition."""
    return str(event.batch_id).encode()


def event_headers(event: Event) -> dict[str, str]:
    """Headers that let a reader route a record without parsing its value."""
    return {
        EVENT_TYPE_HEADER: event.event_type,
        SCHEMA_VERSION_HEADER: str(event.schema_version),
        CORRELATION_ID_HEADER: event.correlation_id,
        EVENT_ID_HEADER: str(event.event_id),
    }

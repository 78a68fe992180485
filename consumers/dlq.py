"""Park a message that cannot be processed, with its reason and origin, so the consumer can go on.

The copy is signed by the publisher like everything the service writes; a signature the original
carried is kept as `dlqSourceSignature` for the investigation, never passed on as the copy's own.
"""

from typing import Any

from producers.publisher import Publisher
from schemas.signing import SIGNATURE_HEADER

SOURCE_SIGNATURE_HEADER = "dlqSourceSignature"


def dlq_headers(record: Any, reason: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in record.headers or ():
        text = value.decode(errors="replace") if value is not None else ""
        headers[SOURCE_SIGNATURE_HEADER if name == SIGNATURE_HEADER else name] = text
    headers.update({
        "dlqReason": reason[:1000],
        "dlqSourceTopic": record.topic,
        "dlqSourcePartition": str(record.partition),
        "dlqSourceOffset": str(record.offset),
    })
    return headers


async def send_to_dlq(publisher: Publisher, topic: str, record: Any, reason: str) -> None:
    """Publish the original bytes and key to `topic`; raises BrokerUnavailable like any send."""
    value = record.value if record.value is not None else b""
    await publisher.send(topic, value, key=record.key, headers=dlq_headers(record, reason))

"""Park a message that cannot be processed, with its reason and origin, so the consumer can go on."""

from typing import Any

from producers.publisher import Publisher


def dlq_headers(record: Any, reason: str) -> dict[str, str]:
    headers = {name: value.decode(errors="replace") for name, value in (record.headers or ())}
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

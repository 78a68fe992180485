"""Ask batchsync for a sync from another service, with confluent-kafka only, and wait for the reply.

    pip install confluent-kafka
    BOOTSTRAP=localhost:9092 BATCH_ID=42 python request_reply_confluent.py

Environment: BOOTSTRAP (required), BATCH_ID (required), PREFIX (default integration.batch.sync),
REPLY_TOPIC (default <PREFIX>.replies.<SERVICE>), SERVICE (default billing-service: the producer and
requestedBy), REQUEST_ID (default a new UUID: send the same one again and you get the same run's outcome),
TIMEOUT (seconds, default 60). Prints the BatchSyncCompleted reply as JSON; exits 0 on success, 1 on a
failed sync, 2 when no reply came in time.
"""

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = os.environ["BOOTSTRAP"]
BATCH_ID = int(os.environ["BATCH_ID"])
PREFIX = os.environ.get("PREFIX", "integration.batch.sync")
SERVICE = os.environ.get("SERVICE", "billing-service")
REPLY_TOPIC = os.environ.get("REPLY_TOPIC", f"{PREFIX}.replies.{SERVICE}")
REQUEST_ID = os.environ.get("REQUEST_ID") or str(uuid.uuid4())
TIMEOUT = float(os.environ.get("TIMEOUT", "60"))


def ensure_reply_topic(admin: AdminClient) -> None:
    """Replies go to a topic we own; create it once (brokers often refuse to auto-create topics)."""
    if REPLY_TOPIC in admin.list_topics(timeout=10).topics:
        return
    futures = admin.create_topics([NewTopic(REPLY_TOPIC, num_partitions=1, replication_factor=1,
                                            config={"retention.ms": str(24 * 3600 * 1000)})])
    for future in futures.values():
        try:
            future.result(10)
        except Exception as exc:  # already created by a concurrent run is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def reply_consumer() -> Consumer:
    """No consumer group (no join delay): read every partition from its current end, captured *before*
    the request is sent so the reply cannot slip past. Older replies are skipped by correlationId."""
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"{SERVICE}-replies",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 20})
    metadata = consumer.list_topics(REPLY_TOPIC, timeout=10).topics[REPLY_TOPIC]
    partitions = []
    for partition in metadata.partitions:
        _low, high = consumer.get_watermark_offsets(TopicPartition(REPLY_TOPIC, partition), timeout=10)
        partitions.append(TopicPartition(REPLY_TOPIC, partition, high))
    consumer.assign(partitions)
    return consumer


def main() -> int:
    ensure_reply_topic(AdminClient({"bootstrap.servers": BOOTSTRAP}))
    consumer = reply_consumer()
    correlation_id = str(uuid.uuid4())
    event_id = str(uuid.uuid4())
    request = {
        "eventId": event_id,
        "eventType": "BatchSyncRequested",
        "schemaVersion": 1,
        "occurredAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "correlationId": correlation_id,
        "batchId": BATCH_ID,
        "runId": None,
        "producer": SERVICE,
        "requestId": REQUEST_ID,
        "requestedBy": SERVICE,
        "trigger": "event",
        "replyTo": REPLY_TOPIC,
        "resumeRunId": None,
    }
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all"})
    producer.produce(f"{PREFIX}.requested", key=str(BATCH_ID), value=json.dumps(request),
                     headers={"eventType": "BatchSyncRequested", "schemaVersion": "1",
                              "correlationId": correlation_id, "eventId": event_id})
    if producer.flush(10) != 0:
        print("the request was not delivered", file=sys.stderr)
        return 2
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            reply = json.loads(message.value())
            if reply.get("correlationId") != correlation_id:
                continue
            print(json.dumps(reply, ensure_ascii=False))
            return 0 if reply.get("success") else 1
    finally:
        consumer.close()
    print(f"no reply for correlationId {correlation_id} within {TIMEOUT:.0f}s", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Kafka outbound: the producer lifecycle, topic creation, the publisher, the outbox relay, request-reply."""

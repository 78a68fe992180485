"""Kafka inbound: offset tracking, the DLQ, the history projector and the sync worker. Thin."""

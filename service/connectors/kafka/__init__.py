"""Kafka topics of JSON records as data (not our event bus): a source, and a target that appends."""

from service.connectors.kafka.client import check_connection
from service.connectors.kafka.params import KafkaParams
from service.connectors.kafka.source import KafkaSource
from service.connectors.kafka.target import KafkaTarget
from service.connectors.kind import ConnectorKind

KIND = ConnectorKind(params=KafkaParams, source=KafkaSource, target=KafkaTarget, modes=frozenset({"append"}),
                     check=check_connection)

"""PostgreSQL: a table (keyset ranges, binary COPY) or a read-only query as a source; a table written by
COPY with its checkpoint in one transaction as a target, in every write mode."""

from service.connectors.kind import ConnectorKind
from service.connectors.postgresql.connection import check_connection
from service.connectors.postgresql.params import PostgresqlParams
from service.connectors.postgresql.source import PostgresSource
from service.connectors.postgresql.target import PostgresTarget

KIND = ConnectorKind(params=PostgresqlParams, source=PostgresSource, target=PostgresTarget,
                     modes=frozenset({"append", "overwrite", "upsert"}), check=check_connection)

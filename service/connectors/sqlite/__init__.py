"""SQLite: a database file (inside the file roots) as a source or a target, in every write mode."""

from service.connectors.kind import ConnectorKind
from service.connectors.sqlite.connection import check_connection, declared_paths
from service.connectors.sqlite.params import SqliteParams
from service.connectors.sqlite.source import SQLiteSource
from service.connectors.sqlite.target import SQLiteTarget

KIND = ConnectorKind(params=SqliteParams, source=SQLiteSource, target=SQLiteTarget,
                     modes=frozenset({"append", "overwrite", "upsert"}), check=check_connection,
                     paths=declared_paths)

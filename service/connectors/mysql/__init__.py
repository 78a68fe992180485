"""MySQL and MariaDB: a table or a read-only query as a source; a table written with its checkpoint in
one transaction as a target, in every write mode."""

from service.connectors.kind import ConnectorKind
from service.connectors.mysql.connection import check_connection
from service.connectors.mysql.params import MysqlParams
from service.connectors.mysql.source import MySQLSource
from service.connectors.mysql.target import MySQLTarget

KIND = ConnectorKind(params=MysqlParams, source=MySQLSource, target=MySQLTarget,
                     modes=frozenset({"append", "overwrite", "upsert"}), check=check_connection)

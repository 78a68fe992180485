"""HTTP APIs returning JSON records: a source only (paged, retried, held to the network policy)."""

from service.connectors.http.client import check_connection
from service.connectors.http.params import HttpParams
from service.connectors.http.source import HttpSource
from service.connectors.kind import ConnectorKind

KIND = ConnectorKind(params=HttpParams, source=HttpSource, check=check_connection)

"""CSV files (inside the file roots) as a source or a target; appends and overwrites, never upserts."""

import asyncio

from service.connectors.csv.params import CsvParams
from service.connectors.csv.source import CsvSource
from service.connectors.csv.target import CsvTarget
from service.connectors.files.options import check_path, declared_paths
from service.connectors.kind import ConnectorKind
from service.sync.model import Endpoint


async def check_connection(endpoint: Endpoint, connect_timeout: float) -> None:  # noqa: ARG001
    """The file, glob or folder exists and is readable (a folder also writable)."""
    await asyncio.to_thread(check_path, endpoint, CsvSource.suffix)


KIND = ConnectorKind(params=CsvParams, source=CsvSource, target=CsvTarget, modes=frozenset({"append", "overwrite"}),
                     check=check_connection, paths=declared_paths)

"""Tables as lists of rows in a process-wide dict, with the checkpoint stored beside them in the same
(synchronous, so atomic) step: the target side of the connector protocol in its smallest honest form."""

from typing import Any, Self

from schemas.api import TargetSpec
from service.connectors.base import Capabilities, Checkpoint, Chunk, Column
from service.sync.errors import TableMissing
from service.sync.model import Endpoint
from tests.support.memory_kind.types import TYPES


class Table:
    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns
        self.rows: list[tuple[Any, ...]] = []
        self.checkpoints: dict[str, Checkpoint] = {}


DATABASES: dict[str, dict[str, Table]] = {}
"""database name → table name → table."""


class MemoryTarget:
    capabilities = Capabilities(transactional_checkpoint=True, types=TYPES)

    def __init__(self, endpoint: Endpoint, spec: TargetSpec, connect_timeout: float) -> None:
        self._tables = DATABASES.setdefault(str(endpoint.params.get("database") or "default"), {})
        self._spec = spec
        self._columns: list[str] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        return None

    @property
    def table(self) -> Table:
        table = self._tables.get(self._spec.table)
        if table is None:
            raise TableMissing(self._spec.table, "target")
        return table

    async def describe(self) -> list[Column]:
        return self.table.columns

    async def create_table(self, columns: list[Column]) -> None:
        spelled = [Column(c.name, TYPES.spell(c.kind or "string", c.sql_type), c.kind) for c in columns]
        self._tables.setdefault(self._spec.table, Table(spelled))

    async def read_checkpoint(self, key: str) -> Checkpoint | None:
        return self.table.checkpoints.get(key)

    async def prepare(self, key: str, columns: list[str]) -> None:
        self._columns = columns

    async def write(self, key: str, chunk: Chunk, previous: Checkpoint) -> Checkpoint | None:
        table = self.table
        done = table.checkpoints.get(key)
        if done is not None and done.chunk >= chunk.number:
            return None
        order = [chunk.columns.index(c.name) if c.name in chunk.columns else None for c in table.columns]
        rows = [tuple(None if i is None else row[i] for i in order) for row in chunk.rows or []]
        table.rows.extend(rows)
        checkpoint = previous.after(chunk, len(rows), len(rows))
        table.checkpoints[key] = checkpoint
        return checkpoint

    async def finish(self, key: str, columns: list[str], last: Checkpoint) -> None:
        self.table.checkpoints[key] = last.as_finished()

    async def abandon(self, key: str) -> None:
        self.table.checkpoints.pop(key, None)


async def check_connection(endpoint: Endpoint, connect_timeout: float) -> None:
    """Nothing to reach: a memory database always answers."""

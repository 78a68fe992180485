"""The params of a memory connection: the name of the in-memory database its tables live in."""

from typing import ClassVar

from service.connectors.params import ParamsModel


class MemoryParams(ParamsModel):
    kind: ClassVar[str] = "memory"
    database: str | None = None

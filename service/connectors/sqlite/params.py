"""The params of a SQLite connection: none, the file is the URL."""

from typing import Any, ClassVar

from service.connectors.params import ParamsModel


class SqliteParams(ParamsModel):
    """Everything is in the URL (`sqlite:///path/to/file.db`)."""

    kind: ClassVar[str] = "sqlite"

    def destination(self, url: str | None) -> tuple[Any, ...]:
        return (self.kind, url)

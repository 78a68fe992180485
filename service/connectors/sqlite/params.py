"""The params of a SQLite connection: none, the file is the URL."""

from typing import Any, ClassVar

from service.connectors.params import ParamsModel, UrlForm


class SqliteParams(ParamsModel):
    """Everything is in the URL (`sqlite:///path/to/file.db`)."""

    kind: ClassVar[str] = "sqlite"
    url_form: ClassVar[UrlForm | None] = UrlForm(("sqlite",), "sqlite:///data/shop.db")
    table_means: ClassVar[str] = "A table of the database file; a source may give a read-only `query` instead"

    def destination(self, url: str | None) -> tuple[Any, ...]:
        return (self.kind, url)

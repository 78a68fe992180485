"""The params of a PostgreSQL connection: none, everything is in the URL."""

from collections.abc import Mapping
from typing import ClassVar

from service.connectors.params import ParamsModel, UrlForm


class PostgresqlParams(ParamsModel):
    """Everything is in the URL (`postgresql://user:pw@host:port/db?sslmode=…`)."""

    kind: ClassVar[str] = "postgresql"
    default_ports: ClassVar[Mapping[str, int]] = {"postgresql": 5432, "postgres": 5432}
    url_form: ClassVar[UrlForm | None] = UrlForm(("postgresql", "postgres", "postgresql+asyncpg"),
                                                 "postgresql://user:password@host:5432/database")
    table_means: ClassVar[str] = ("A table, optionally `schema.table`; a source may give a read-only `query` "
                                  "instead")

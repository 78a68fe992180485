"""The params of a MySQL/MariaDB connection: none, everything is in the URL."""

from collections.abc import Mapping
from typing import ClassVar

from service.connectors.params import ParamsModel, UrlForm


class MysqlParams(ParamsModel):
    """Everything is in the URL (`mysql://user:pw@host:port/db`)."""

    kind: ClassVar[str] = "mysql"
    default_ports: ClassVar[Mapping[str, int]] = {"mysql": 3306, "mariadb": 3306}
    url_form: ClassVar[UrlForm | None] = UrlForm(("mysql", "mariadb", "mysql+asyncmy", "mysql+aiomysql"),
                                                 "mysql://user:password@host:3306/database")
    table_means: ClassVar[str] = ("A table, optionally `database.table`; a source may give a read-only `query` "
                                  "instead")

"""The params of a MySQL/MariaDB connection: none, everything is in the URL."""

from collections.abc import Mapping
from typing import ClassVar

from service.connectors.params import ParamsModel


class MysqlParams(ParamsModel):
    """Everything is in the URL (`mysql://user:pw@host:port/db`)."""

    kind: ClassVar[str] = "mysql"
    default_ports: ClassVar[Mapping[str, int]] = {"mysql": 3306, "mariadb": 3306}

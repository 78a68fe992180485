"""The params every file connection shares (CSV, JSON Lines); each format's model adds its own."""

from typing import Any, Literal

from pydantic import Field

from service.connectors.params import Columns, ParamsModel


class FileParams(ParamsModel):
    path: str | None = Field(default=None, description="A file, a folder of files or a glob")
    encoding: str | None = Field(default=None, description="utf-8 (default), utf-8-sig, gbk…")
    compression: Literal["gzip", "none"] | None = None
    columns: Columns = Field(default=None, description="Declared columns: names, {name, kind} or {name: kind}")

    def destination(self, url: str | None) -> tuple[Any, ...]:
        return (self.kind, self.path or url)

"""The params every file connection shares (CSV, JSON Lines); each format's model adds its own."""

from typing import Any, ClassVar, Literal

from pydantic import Field

from service.connectors.params import Columns, ParamsModel, UrlForm


class FileParams(ParamsModel):
    url_form: ClassVar[UrlForm | None] = UrlForm(("file",), "file:///data/exports", required=False, bare=True)
    """`params.path` is the usual way; a `url` (a path or `file://` URL) stands in for it."""
    table_means: ClassVar[str] = (
        "When `path` is a folder: the file inside it, `<table>.<ext>` or `<table>.<ext>.gz` (a glob such as "
        "`orders_*` reads several as one source; a target writes `<table>.<ext>`). When `path` is a file or a "
        "glob: only a label")
    path: str | None = Field(default=None, description="A file, a folder of files or a glob")
    encoding: str | None = Field(default=None, description="utf-8 (default), utf-8-sig, gbk…")
    compression: Literal["gzip", "none"] | None = Field(
        default=None, description="`gzip` writes `.gz` files; reading detects `.gz` by name (default none)")
    columns: Columns = Field(default=None, description="Declared columns: names, {name, kind} or {name: kind}")

    def destination(self, url: str | None) -> tuple[Any, ...]:
        return (self.kind, self.path or url)

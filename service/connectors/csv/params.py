"""The params of a CSV connection: the file options plus the CSV dialect."""

from typing import ClassVar

from pydantic import Field

from service.connectors.files.params import FileParams


class CsvParams(FileParams):
    kind: ClassVar[str] = "csv"
    delimiter: str | None = Field(default=None, description="One character; default `,`")
    quote: str | None = Field(default=None, description='One character; default `"`')
    header: bool | None = Field(default=None, description="Whether the first line names the columns (default true)")
    nullValue: str | None = Field(default=None, description="The text that stands for NULL (default empty)")

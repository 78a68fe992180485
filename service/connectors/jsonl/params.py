"""The params of a JSON Lines connection: the file options only."""

from typing import ClassVar

from service.connectors.files.params import FileParams


class JsonlParams(FileParams):
    kind: ClassVar[str] = "jsonl"

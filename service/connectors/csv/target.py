"""CSV files as a target: a header line (unless `params.header` is false), the dialect of the connection,
NULL as `params.nullValue`, every value as text (`files/values.py`); writing and publishing are
`files/target.py`'s.
"""

import csv
import io
from typing import Any

from schemas.messages import CSV_TARGET_NEEDS_COLUMNS, csv_target_without_header
from service.connectors.base import Column
from service.connectors.csv.source import names_of
from service.connectors.files.options import LineReader, declared_columns
from service.connectors.files.target import FileTarget, encoded
from service.connectors.files.values import to_text
from service.sync.errors import ConfigInvalid


class CsvTarget(FileTarget):
    suffix = "csv"

    def read_schema(self) -> list[Column]:
        if self.options.columns is not None:
            return declared_columns(self.options.columns)
        if not self.options.header:
            raise ConfigInvalid(CSV_TARGET_NEEDS_COLUMNS)
        reader = LineReader(self.options, self.path)
        try:
            first = next((r for r in csv.reader(reader, delimiter=self.options.delimiter,
                                                quotechar=self.options.quote) if r), None)
        finally:
            reader.close()
        if first is None:
            raise ConfigInvalid(csv_target_without_header(self.path.name))
        return [Column(name, "text") for name in names_of(first)]

    def _writer(self, buffer: io.StringIO) -> Any:
        return csv.writer(buffer, delimiter=self.options.delimiter, quotechar=self.options.quote,
                          lineterminator="\n")

    def header(self, names: list[str]) -> bytes:
        if not self.options.header:
            return b""
        buffer = io.StringIO()
        self._writer(buffer).writerow(names)
        return encoded(self.options, self.path, buffer.getvalue())

    def encode(self, names: list[str], columns: list[str], rows: list[tuple[Any, ...]]) -> bytes:
        buffer = io.StringIO()
        writer, null = self._writer(buffer), self.options.null_value
        index = {c: i for i, c in enumerate(columns)}
        picks = None if columns == names else [index.get(n) for n in names]
        for row in rows:
            values = row if picks is None else [None if i is None else row[i] for i in picks]
            writer.writerow([null if v is None else v if type(v) is str else to_text(v) for v in values])
        return encoded(self.options, self.path, buffer.getvalue())

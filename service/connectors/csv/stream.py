"""CSV records as raw bytes for a target that parses CSV itself (PostgreSQL's `COPY … FROM STDIN (FORMAT
csv)`): the CSV source's fast path, which skips decoding fields into Python values and encoding them again.

Only whole records are sent, found by quote parity (a record ends at a line end outside quotes), so a
chunk's end is a resume position just as on the decoded path. Bytes are checked (UTF-8) or transcoded
(GBK…) to UTF-8 here, so an undecodable line still fails naming its file and line.
"""

import csv
from collections.abc import Iterator, Sequence

from service.connectors.base import Column, SelectItem, TargetTypes
from service.connectors.files.options import FileOptions, LineReader

COPY_CSV = "csv"
"""A chunk stream of this copy format is RFC 4180 CSV in UTF-8: `,` and `"`, an empty field (quoted or
not) is NULL, no header; times without an offset are UTC."""

QUOTE = b'"'

STREAMABLE_FORMS = frozenset({"int", "float", "decimal", "bool", "date", "datetime", "string", "json"})
"""Value forms of target columns whose text input reads our CSV encodings as the decoded path would
(PostgreSQL's COPY, the one target that takes CSV streams). Not binary (base64 would be taken as
escape-format bytes), nor `timestamp` (PostgreSQL drops an offset, we convert to UTC), `time` or `uuid`."""


def streamable(options: FileOptions, columns: Sequence[Column], plan: Sequence[SelectItem],
               target_types: TargetTypes) -> bool:
    """Whether the file's bytes can go to the target as they are: the canonical dialect (any encoding),
    every column passed through in order (renames allowed), no cast, and target types that parse alike."""
    return (
        options.delimiter == "," and options.quote == '"' and options.null_value == ""
        and all(c.kind in (None, "string") for c in columns)
        and len(plan) == len(columns)
        and all(item.source == column.name and item.cast is None and not item.is_constant
                for item, column in zip(plan, columns, strict=True))
        and all(target_types.form(item.target) in STREAMABLE_FORMS for item in plan)
    )


def take_records(lines: Iterator[bytes], size: int, out: list[bytes]) -> int:
    """Append the lines of up to `size` whole records to `out` (blank lines skipped); the records taken,
    fewer when the file ends. A file that ends inside a quoted field leaves its last record unterminated,
    and the target's parser reports it."""
    count, inside = 0, False
    for raw in lines:
        if not inside and len(raw) <= 2 and not raw.strip():
            continue
        out.append(raw)
        if QUOTE in raw and raw.count(QUOTE) & 1:
            inside = not inside
        if not inside:
            count += 1
            if count == size:
                return count
    return count + (1 if inside else 0)


def header_of(reader: LineReader, lines: Iterator[bytes]) -> list[str] | None:
    """The first record of a file, parsed (for the header check)."""
    head: list[bytes] = []
    if not take_records(lines, 1, head):
        return None
    try:
        text = b"".join(head).decode(reader.options.text_encoding)
    except UnicodeDecodeError as exc:
        raise reader.undecodable(reader.line) from exc
    return next(csv.reader(text.splitlines(keepends=True)), None)


def utf8(data: bytes, reader: LineReader, first_line: int) -> bytes:
    """`data` (lines of `reader` from `first_line`) as UTF-8, checked; a bad byte names its line."""
    encoding = reader.options.text_encoding
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise reader.undecodable(first_line + data.count(b"\n", 0, exc.start)) from exc
    return data if encoding == "utf-8" else text.encode("utf-8")

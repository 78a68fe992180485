"""Raw records of a file chunk → target rows, column by column: NULL markers, the mapping (casts,
constants, renames), then each target column's type.

Column-wise because a whole column of well-formed text converts through a C builtin in one `map`
(`int`, `Decimal`, `date.fromisoformat`) several times faster than a Python call per value; a column
that fails that way is converted again value by value with the lenient converter, which names the
row that does not fit.
"""

from collections.abc import Sequence
from decimal import InvalidOperation
from typing import Any

from schemas.messages import conversion_failed
from service.connectors.base import Column, SelectItem, TargetTypes
from service.connectors.files.values import Converter, converter, fast_text_converter
from service.sync.errors import SourceFailed
from service.sync.transforms import row_transform

CONVERSION_ERRORS = (ValueError, TypeError, ArithmeticError, InvalidOperation, KeyError)


class BadValue(Exception):
    """Row `row` of the chunk does not convert; `reason` is the message without its location."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(reason)
        self.row, self.reason = row, reason


class BadRecord:
    """A record a format's parser could not type (CSV `params.columns`), passed on in place of its values
    by a tolerant source so the chunk can set it aside (`errorLimit`) instead of failing."""

    def __init__(self, row: dict[str, Any], reason: str) -> None:
        self.row, self.reason = row, reason


class ChunkConverter:
    def __init__(self, columns: Sequence[Column], plan: Sequence[SelectItem], target_types: TargetTypes, *,
                 from_text: bool, null_text: str | None) -> None:
        names = [c.name for c in columns]
        typed = {c.name for c in columns if c.kind not in (None, "string")}
        self._null = null_text
        self._simple = all(not item.is_constant and item.cast is None for item in plan)
        self._picks = [names.index(item.source or "") for item in plan] if self._simple else []
        self._transform = None if self._simple else row_transform(names, plan)
        self._steps: list[tuple[str, Converter | None, Converter | None]] = []
        for item in plan:
            text = from_text and item.cast is None and not item.is_constant and item.source not in typed
            form = target_types.form(item.target)
            self._steps.append((item.target, fast_text_converter(form) if text else None,
                                converter(form, from_text=text)))

    def __call__(self, records: list[list[Any]]) -> list[tuple[Any, ...]]:
        if not records:
            return []
        columns: list[Sequence[Any]] = list(zip(*records, strict=True))
        if self._null is not None:
            null = self._null
            columns = [[None if v == null else v for v in col] if null in col else col for col in columns]
        if self._simple:
            columns = [columns[i] for i in self._picks]
        else:
            columns = list(zip(*self._mapped(list(zip(*columns, strict=True))), strict=True))
        out = [_column(col, name, fast, slow) for col, (name, fast, slow) in zip(columns, self._steps, strict=True)]
        return list(zip(*out, strict=True))

    def _mapped(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        assert self._transform is not None
        out = []
        for index, row in enumerate(rows):
            try:
                out.append(self._transform(row))
            except SourceFailed as exc:
                raise BadValue(index, exc.reason) from exc
        return out


def _column(values: Sequence[Any], name: str, fast: Converter | None, slow: Converter | None) -> Sequence[Any]:
    if slow is None:
        return values
    if fast is not None:
        try:
            if None not in values:
                return list(map(fast, values))
            return [None if v is None else fast(v) for v in values]
        except CONVERSION_ERRORS:
            pass
    out = []
    for index, value in enumerate(values):
        try:
            out.append(None if value is None else slow(value))
        except CONVERSION_ERRORS as exc:
            raise BadValue(index, conversion_failed(name)) from exc
    return out

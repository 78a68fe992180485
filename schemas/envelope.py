"""The one response envelope of the HTTP API: `{code, message, data}` with code = HTTP status."""

from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from schemas.messages import OK

T = TypeVar("T")

class Envelope(BaseModel, Generic[T]):
    code: int = 200
    message: str = OK
    data: T | None = None


class Page(BaseModel, Generic[T]):
    total: int
    rows: list[T]


class ErrorEnvelope(BaseModel):
    """Every error answer: `code` is the HTTP status, `message` the user-facing text; `data` is null except
    where an error names something (a 409 for an active run carries its `batchId` and `runId`, a 401 its
    `reason`, a 403 the missing `permission`)."""

    code: int
    message: str
    data: dict[str, Any] | None = None

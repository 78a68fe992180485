"""The one response envelope of the HTTP API: `{code, message, data}` with code = HTTP status."""

from typing import Generic, TypeVar

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

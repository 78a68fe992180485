"""camelCase on the wire, snake_case in Python; times are RFC 3339 UTC."""

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, to the millisecond: the one time format on the wire."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


UtcTime = Annotated[datetime, PlainSerializer(format_time, return_type=str, when_used="json")]


class WireModel(BaseModel):
    """Base of every wire model: camelCase aliases, accepts either spelling, ignores unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
    )

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

"""The bus recovery settings refuse what would break a guarantee."""

import pytest
from pydantic import ValidationError

from service.config import Settings


def test_the_ledger_may_not_forget_a_request_still_on_the_requests_topic() -> None:
    with pytest.raises(ValidationError, match="LEDGER_RETENTION_SECONDS"):
        Settings(ledger_retention_seconds=3600, requests_retention_ms=7 * 24 * 3600 * 1000)
    assert Settings(ledger_retention_seconds=3600, requests_retention_ms=3600 * 1000).ledger_retention_seconds == 3600


def test_defaults_keep_outbox_rows_a_week_and_read_partitions_through_groups() -> None:
    settings = Settings()
    assert settings.partition_assignment == "group"
    assert settings.outbox_retention_seconds == 7 * 24 * 3600
    assert settings.ledger_retention_seconds * 1000 >= settings.requests_retention_ms
    with pytest.raises(ValidationError):
        Settings(partition_assignment="manual")

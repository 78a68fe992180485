"""Session-wide real services: a migrated state-store database, a source and a target database,
and a Tansu broker on a free port. Tests that need a clean slate build their own batches."""

from collections.abc import Iterator

import pytest

from service.db.migrate import upgrade
from tests.support.brokers import RunningBroker, tansu
from tests.support.databases import fresh_database


@pytest.fixture(scope="session")
def state_dsn() -> Iterator[str]:
    with fresh_database("bs_state") as dsn:
        upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        yield dsn


@pytest.fixture(scope="session")
def source_dsn() -> Iterator[str]:
    with fresh_database("bs_source") as dsn:
        yield dsn


@pytest.fixture(scope="session")
def target_dsn() -> Iterator[str]:
    with fresh_database("bs_target") as dsn:
        yield dsn


@pytest.fixture(scope="session")
def broker() -> Iterator[RunningBroker]:
    with tansu() as running:
        yield running

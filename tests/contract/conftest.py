"""Fixtures of the contract suites: the context every case is built from, and the PostgreSQL reference."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.cases import collect
from tests.contract.cases.postgresql import PostgresCase
from tests.contract.harness import Context
from tests.support.databases import fresh_database


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, attribute in (("source_case_class", "SOURCE_CASES"), ("target_case_class", "TARGET_CASES")):
        if fixture in metafunc.fixturenames:
            classes = collect(attribute)
            metafunc.parametrize(fixture, classes, ids=[c.name for c in classes])


@pytest.fixture(scope="session")
def contract_dsn() -> Iterator[str]:
    with fresh_database("bs_contract") as dsn:
        yield dsn


@pytest.fixture(scope="session")
def reference_dsn() -> Iterator[str]:
    with fresh_database("bs_reference") as dsn:
        yield dsn


@pytest.fixture
def context(contract_dsn: str, tmp_path: Path, broker) -> Context:
    return Context(pg_dsn=contract_dsn, tmp_dir=tmp_path, kafka_bootstrap=broker.bootstrap)


@pytest.fixture
def source_case(source_case_class, context):
    return source_case_class(context)


@pytest.fixture
def target_case(target_case_class, context):
    return target_case_class(context)


@pytest.fixture
def reference(context: Context, reference_dsn: str) -> PostgresCase:
    """PostgreSQL in a database of its own, so a PostgreSQL case never reads what the reference wrote."""
    return PostgresCase(Context(pg_dsn=reference_dsn, tmp_dir=context.tmp_dir,
                                kafka_bootstrap=context.kafka_bootstrap))

"""Session-wide real services: a migrated state-store database, a source and a target database,
and a Tansu broker on a free port. Tests that need a clean slate build their own batches."""

import os
import tempfile
from collections.abc import Generator, Iterator

import pytest

from service.db.migrate import upgrade
from tests.support import logging_guard
from tests.support.brokers import RunningBroker, tansu
from tests.support.databases import fresh_database
from tests.support.watchdog import Watchdog, terminal_writer

# The suite's own trust settings, inherited by every Settings() and every process a test starts:
# files may live under the temp folder (where tmp_path is), and a fixed key encrypts and signs.
os.environ.setdefault("BATCHSYNC_FILE_ROOTS", tempfile.gettempdir())
os.environ.setdefault("BATCHSYNC_SECRET_KEY", "test-secret-key-for-the-suite-only-0123456789")

WATCHDOG_SECONDS = float(os.environ.get("BATCHSYNC_TEST_WATCHDOG_SECONDS", "120"))
"""A test running this long has every asyncio task (with what it awaits) and every thread written to the
terminal, before pytest-timeout's 300 s fail it with thread stacks only (tests/support/watchdog.py)."""
_watchdog = pytest.StashKey[Watchdog]()
_logging_changes = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_watchdog] = Watchdog(WATCHDOG_SECONDS, terminal_writer(config))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    watchdog = item.config.stash[_watchdog]
    watchdog.started(item.nodeid)
    try:
        return (yield)
    finally:
        watchdog.finished()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    fired = config.stash[_watchdog].fired
    if fired:
        terminalreporter.write_sep("=", f"watchdog: tasks dumped for tests over {WATCHDOG_SECONDS:.0f} s")
        for test in dict.fromkeys(fired):
            terminalreporter.write_line(f"{test} ({fired.count(test)} dump(s))")
    if changed := config.stash.get(_logging_changes, []):
        terminalreporter.write_sep("=", "logging changed by a test (put back after it)")
        for line in changed:
            terminalreporter.write_line(line)


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


async def _mariadb_tables() -> set[str]:
    import asyncmy

    conn = await asyncmy.connect(host="127.0.0.1", port=3306, user="root", database="test")
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("SHOW TABLES")
            return {row[0] for row in await cursor.fetchall()}
    finally:
        conn.close()


async def _drop_mariadb_tables(tables: set[str]) -> None:
    import asyncmy

    conn = await asyncmy.connect(host="127.0.0.1", port=3306, user="root", database="test")
    try:
        async with conn.cursor() as cursor:
            for table in sorted(tables):
                await cursor.execute(f"DROP TABLE IF EXISTS `{table}`")
    finally:
        conn.close()


@pytest.fixture(scope="session", autouse=True)
def mariadb_test_database_left_clean() -> Iterator[None]:
    """Tests share MariaDB's `test` database; the tables a session creates are dropped when it ends."""
    import asyncio

    try:
        before = asyncio.run(_mariadb_tables())
    except Exception:
        yield
        return
    yield
    asyncio.run(_drop_mariadb_tables(asyncio.run(_mariadb_tables()) - before))


@pytest.fixture(autouse=True)
def logging_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    """A command run in-process (typer's CliRunner) sets up logging onto its own captured stderr, a library may
    disable loggers or stop their propagation: the next test must not keep writing there, nor inherit a level,
    nor lose records its `caplog` should see. What a test changed is put back and listed at the end of the run."""
    before = logging_guard.snapshot()
    yield
    if changes := logging_guard.restore(before):
        request.config.stash.setdefault(_logging_changes, []).append(f"{request.node.nodeid}: {'; '.join(changes)}")


@pytest.fixture
def fresh_secret_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that compare exact output: values earlier tests' connections taught the process-wide log mask
    (a password of 'secrets', a user named 'batchsync') would be masked in it, as they are in production."""
    from service import logging_filters

    monkeypatch.setattr(logging_filters, "_remembered", logging_filters._Remembered())

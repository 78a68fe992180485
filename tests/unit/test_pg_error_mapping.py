"""Which asyncpg interface errors a run rides out (a connection lost under it) and which fail it (our bug)."""

import asyncpg.exceptions as pgerr
import pytest

from service.connectors.postgresql.connection import map_error
from service.sync.errors import is_transient


@pytest.mark.parametrize("message", [
    "connection is closed",
    "cannot perform operation: connection is closed",
    "cannot perform operation: another operation is cancelling",
])
def test_a_connection_lost_under_the_run_is_transient(message: str) -> None:
    assert is_transient(map_error(pgerr.InterfaceError(message), "target"))


def test_two_operations_at_once_on_one_connection_fail_the_run() -> None:
    error = map_error(pgerr.InterfaceError("cannot perform operation: another operation is in progress"), "target")
    assert not is_transient(error)
    assert error.detail == "InterfaceError: cannot perform operation: another operation is in progress", \
        "the driver's words say what went wrong"

"""A connector kind that lives only in the tests: a ClickHouse-like in-memory target, written the way a
new system is added (one package declaring its KIND, nothing else edited), so tests/unit/test_new_kind.py
can prove that adding a system is a package plus a registry line."""

from service.connectors.kind import ConnectorKind
from tests.support.memory_kind.params import MemoryParams
from tests.support.memory_kind.target import MemoryTarget, check_connection

KIND = ConnectorKind(params=MemoryParams, target=MemoryTarget, modes=frozenset({"append"}), check=check_connection)

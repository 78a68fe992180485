"""What a connector package declares about its system, in one object: `<kind>/__init__.py` builds its
`KIND` and the registry lists it (`service.connectors.registry`). Adding a system is a new package that
declares one of these, plus its line in the registry.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.connectors.base import Source, Target
from service.connectors.params import ParamsModel

if TYPE_CHECKING:
    from schemas.api import SourceSpec, TargetSpec
    from service.sync.model import Endpoint

SourceFactory = Callable[["Endpoint", "SourceSpec", float], Source]
TargetFactory = Callable[["Endpoint", "TargetSpec", float], Target]
Check = Callable[["Endpoint", float], Awaitable[None]]
Paths = Callable[["Endpoint"], list[str]]


@dataclass(frozen=True)
class ConnectorKind:
    """One connection type: its params schema, its source and target (None: it cannot be one), the write
    modes its target supports, its connection test and (file kinds) the local paths a connection names."""

    params: type[ParamsModel]
    """The params model; its `kind` is the connection type's name (`Endpoint.type`)."""
    check: Check
    """Connect and run a trivial request, raising the SyncErrors a sync would (`POST …/test`)."""
    source: SourceFactory | None = None
    target: TargetFactory | None = None
    modes: frozenset[str] = frozenset()
    """The write modes (`WriteMode` values) the target supports."""
    paths: Paths | None = None
    """The local files a connection names, which the file policy must allow before it is stored."""

    @property
    def name(self) -> str:
        return self.params.kind

    @property
    def cursor(self) -> bool:
        """Whether its source reads incrementally beyond a high-water mark (`cursorColumn`)."""
        capabilities = getattr(self.source, "capabilities", None)
        return capabilities is not None and capabilities.cursor

"""The connectors' side of the error boundary: each driver module decides *what* a driver error means
(terminal, transient, a missing table); these helpers pick the class for the side it happened on and
wrap a block so every driver error leaves it mapped, while our own SyncErrors pass unchanged.
"""

import contextlib
from collections.abc import Callable, Iterator

from service.sync.errors import (
    Side,
    SourceFailed,
    SyncError,
    TargetFailed,
    TransientSourceError,
    TransientTargetError,
)


def failed(side: Side, reason: str | None = None, detail: str | None = None) -> SyncError:
    """A terminal error of `side` (源/目标 failure), with the seed's reason unless one is given."""
    return (SourceFailed if side == "source" else TargetFailed)(reason, detail=detail)


def transient(side: Side, detail: str | None = None) -> SyncError:
    """An error of `side` the engine retries with back-off (a dropped connection, a lock timeout)."""
    return (TransientSourceError if side == "source" else TransientTargetError)(detail=detail)


@contextlib.contextmanager
def mapped(
    driver_errors: tuple[type[BaseException], ...], map_error: Callable[[BaseException], SyncError]
) -> Iterator[None]:
    """Map every `driver_errors` raised inside the block with `map_error`; SyncErrors pass unchanged."""
    try:
        yield
    except SyncError:
        raise
    except driver_errors as exc:
        raise map_error(exc) from exc

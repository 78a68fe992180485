"""Errors of a sync run, each carrying its retry policy and the seed's message.

    SyncError                       terminal unless it is also Transient
    ├── ConnectError                (side: source | target)
    │   ├── ConnectTimeout          连接超时           *_TIMEOUT
    │   ├── AuthFailed              认证失败           *_AUTH
    │   └── ConnectRefused          连接被拒绝         *_REFUSED
    ├── TableMissing                源表不存在：<name>  SOURCE_NOT_FOUND / TARGET_ERROR
    ├── SourceFailed / TargetFailed other driver errors, terminal
    │   └── CheckpointTaken         another execution of the run advanced the checkpoint
    ├── ConfigInvalid               the batch cannot run as configured
    │   └── AccessDenied            a trust-boundary policy refused a path or address  ACCESS_DENIED
    ├── RunCancelled                CANCELLED
    └── Transient (mixin)           dropped connection, serialization failure: the engine retries

Connectors map driver errors to these at their boundary; the HTTP layer alone turns them into
status codes and envelopes.
"""

from typing import Literal

from schemas.events import ErrorCode
from schemas.messages import (
    ACCESS_DENIED,
    AUTH_REJECTED,
    CHECKPOINT_TAKEN,
    CONFIG_INVALID,
    CONNECT_REFUSED,
    CONNECT_TIMEOUT,
    INTERNAL_ERROR,
    RUN_CANCELLED,
    SOURCE_DROPPED,
    SOURCE_FAILED,
    TARGET_DATABASE,
    TARGET_DROPPED,
    TARGET_FAILED,
    source_table_missing,
    target_table_missing,
)

Side = Literal["source", "target"]


class SyncError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL
    reason: str = INTERNAL_ERROR

    def __init__(self, reason: str | None = None, *, detail: str | None = None) -> None:
        self.reason = reason or type(self).reason
        self.detail = detail
        super().__init__(self.reason if detail is None else f"{self.reason} ({detail})")


class Transient:
    """Mixin: the engine retries this error with jittered back-off before failing the run."""


class ConnectError(SyncError):
    side: Side = "source"

    def __init__(self, side: Side = "source", *, detail: str | None = None) -> None:
        self.side = side
        prefix = "" if side == "source" else TARGET_DATABASE
        super().__init__(prefix + type(self).reason, detail=detail)
        self.code = ErrorCode[f"{side.upper()}_{self._code_suffix}"]

    _code_suffix = "ERROR"


class ConnectTimeout(ConnectError):
    reason = CONNECT_TIMEOUT
    _code_suffix = "TIMEOUT"


class AuthFailed(ConnectError):
    reason = AUTH_REJECTED
    _code_suffix = "AUTH"


class ConnectRefused(ConnectError):
    reason = CONNECT_REFUSED
    _code_suffix = "REFUSED"


class TableMissing(SyncError):
    def __init__(self, name: str, side: Side = "source") -> None:
        self.side = side
        self.code = ErrorCode.SOURCE_NOT_FOUND if side == "source" else ErrorCode.TARGET_ERROR
        super().__init__(source_table_missing(name) if side == "source" else target_table_missing(name))


class SourceFailed(SyncError):
    code = ErrorCode.SOURCE_ERROR
    reason = SOURCE_FAILED


class TargetFailed(SyncError):
    code = ErrorCode.TARGET_ERROR
    reason = TARGET_FAILED


class CheckpointTaken(TargetFailed):
    """A chunk this run was about to write is already in the target: another execution of the same run is
    writing (this one lost its lease). Stop at once rather than publish a partial result."""

    reason = CHECKPOINT_TAKEN


class ConfigInvalid(SyncError):
    code = ErrorCode.CONFIG_INVALID
    reason = CONFIG_INVALID


class AccessDenied(ConfigInvalid):
    """A policy of service/security refused a file path, a network address or a topic (docs/spec.md §7).

    A subclass of ConfigInvalid: the same connection will be refused again, so it is never retried.
    """

    code = ErrorCode.ACCESS_DENIED
    reason = ACCESS_DENIED


class RunCancelled(SyncError):
    code = ErrorCode.CANCELLED
    reason = RUN_CANCELLED


class TransientSourceError(Transient, SourceFailed):
    reason = SOURCE_DROPPED


class TransientTargetError(Transient, TargetFailed):
    reason = TARGET_DROPPED


def is_transient(error: BaseException) -> bool:
    return isinstance(error, Transient)

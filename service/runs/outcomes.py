"""What asking for a sync, a retry or a cancel can come to. The HTTP layer maps these to status codes."""

from dataclasses import dataclass
from uuid import UUID

from schemas.events import BatchSyncCompleted


@dataclass(frozen=True)
class Finished:
    """The run ended within the wait: 200 on success, 400 `同步失败：<message>` otherwise."""

    reply: BatchSyncCompleted


@dataclass(frozen=True)
class Accepted:
    """Still running when the wait ran out: 202 with the run id to poll."""

    batch_id: int
    run_id: UUID


@dataclass(frozen=True)
class BatchNotFound:
    batch_id: int


@dataclass(frozen=True)
class AlreadyRunning:
    batch_id: int
    run_id: UUID


@dataclass(frozen=True)
class NotRetryable:
    """The batch's last run did not fail: 400 `批次未处于失败状态`."""

    batch_id: int


@dataclass(frozen=True)
class Unavailable:
    """Broker or database unreachable: 503 `服务暂不可用：<part>`."""

    part: str


@dataclass(frozen=True)
class CancelRequested:
    batch_id: int
    run_id: UUID


@dataclass(frozen=True)
class NothingToCancel:
    batch_id: int


@dataclass(frozen=True)
class CancelTooLate:
    """The active run already began to publish what it wrote: 409 `同步已进入提交阶段，无法取消`."""

    batch_id: int
    run_id: UUID


SyncOutcome = Finished | Accepted | BatchNotFound | AlreadyRunning | NotRetryable | Unavailable
CancelOutcome = CancelRequested | NothingToCancel | CancelTooLate | BatchNotFound | Unavailable

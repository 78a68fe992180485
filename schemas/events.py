"""The lifecycle events of a batch sync (docs/events.md).

Every event shares the header fields of `Event`; the body fields follow per type.
Readers ignore unknown fields, so additive changes keep `schemaVersion` at 1.
"""

from enum import StrEnum
from typing import Annotated, Any, Literal, get_args
from uuid import UUID, uuid4

from pydantic import Field, TypeAdapter, field_validator, model_validator

from schemas.base import UtcTime, WireModel, utcnow


class Trigger(StrEnum):
    HTTP = "http"
    EVENT = "event"
    RETRY = "retry"
    SCHEDULE = "schedule"


class ErrorCode(StrEnum):
    SOURCE_TIMEOUT = "SOURCE_TIMEOUT"
    SOURCE_AUTH = "SOURCE_AUTH"
    SOURCE_REFUSED = "SOURCE_REFUSED"
    SOURCE_NOT_FOUND = "SOURCE_NOT_FOUND"
    SOURCE_ERROR = "SOURCE_ERROR"
    TARGET_TIMEOUT = "TARGET_TIMEOUT"
    TARGET_AUTH = "TARGET_AUTH"
    TARGET_REFUSED = "TARGET_REFUSED"
    TARGET_ERROR = "TARGET_ERROR"
    CONFIG_INVALID = "CONFIG_INVALID"
    ACCESS_DENIED = "ACCESS_DENIED"
    BATCH_NOT_FOUND = "BATCH_NOT_FOUND"
    ALREADY_RUNNING = "ALREADY_RUNNING"
    NOT_RETRYABLE = "NOT_RETRYABLE"
    CANCELLED = "CANCELLED"
    BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"
    INTERNAL = "INTERNAL"


class Event(WireModel):
    event_id: UUID = Field(default_factory=uuid4)
    event_type: str
    schema_version: Literal[1] = 1
    occurred_at: UtcTime = Field(default_factory=utcnow)
    correlation_id: str = Field(min_length=1, max_length=200)
    batch_id: int = Field(ge=1, le=2**31 - 1)
    run_id: UUID | None = None
    producer: str = Field(min_length=1, max_length=200)


class BatchSyncRequested(Event):
    event_type: Literal["BatchSyncRequested"] = "BatchSyncRequested"
    request_id: str = Field(default="", max_length=200, description="idempotency key; defaults to eventId")
    requested_by: str = Field(min_length=1, max_length=200)
    trigger: Trigger = Trigger.EVENT
    reply_to: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,249}$")
    resume_run_id: UUID | None = None
    slice: int | None = Field(default=None, ge=0, le=100_000, description=(
        "a slice of a split run (docs/spec.md §10): `runId` names the run, this the slice; null for a run"))

    @model_validator(mode="after")
    def _slice_of_a_run(self) -> "BatchSyncRequested":
        if self.slice is not None and self.run_id is None:
            raise ValueError("a slice request names its run (runId)")
        return self

    @field_validator("correlation_id", "producer", "request_id", "requested_by")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @model_validator(mode="after")
    def _default_request_id(self) -> "BatchSyncRequested":
        if not self.request_id:
            self.request_id = str(self.event_id)
        return self


class BatchSyncStarted(Event):
    event_type: Literal["BatchSyncStarted"] = "BatchSyncStarted"
    trigger: Trigger
    requested_by: str
    started_at: UtcTime
    resumed_from_chunk: int = 0
    resumed_from_run_id: UUID | None = None
    config_hash: str | None = None


class RunPhase(StrEnum):
    """What a run is doing when it reports progress."""

    WRITING = "writing"
    """Reading chunks from the source and writing them to the target (the two overlap)."""
    PUBLISHING = "publishing"
    """Every chunk is written; the target makes them visible (an overwrite's swap, an upsert's merge)."""


class BatchSyncProgress(Event):
    event_type: Literal["BatchSyncProgress"] = "BatchSyncProgress"
    chunk: int
    records_read: int
    records_written: int
    total_estimate: int | None = None
    elapsed_ms: int
    records_per_second: float
    phase: RunPhase | None = None
    """Null from producers that predate it."""


class BatchSyncCompleted(Event):
    event_type: Literal["BatchSyncCompleted"] = "BatchSyncCompleted"
    success: bool
    message: str
    sync_time: UtcTime
    records_synced: int = 0
    duration_ms: int = 0
    error_code: ErrorCode | None = None
    cancelled_by: str | None = None
    records_rejected: int = 0
    """Rows set aside under the batch's `errorLimit` (each told on `P.rejected`)."""
    source_count: int | None = None
    """A full run's reconciliation: the source's row count after the run (null: incremental, or not counted)."""
    target_count: int | None = None
    """The target's row count after the run (for files, the rows written)."""
    reconciled: bool | None = None
    """Whether the counts agree as the write mode expects; false names the difference in `message`."""


class BatchSyncSkipped(Event):
    """A schedule fire that started nothing because a run of the batch was still active (docs/spec.md §9).
    `runId` is that active run; `requestId` is the fire's (`schedule:<batchId>:<fireTime>`)."""

    event_type: Literal["BatchSyncSkipped"] = "BatchSyncSkipped"
    fire_time: UtcTime
    request_id: str = Field(min_length=1, max_length=200)
    trigger: Trigger = Trigger.SCHEDULE
    reason: ErrorCode = ErrorCode.ALREADY_RUNNING


class BatchSyncRetryScheduled(Event):
    """The retry policy resumed a run that failed on a transient error (docs/spec.md §9). `runId` is the failed
    run; `retryRunId` the run that resumes it from its checkpoint, attempt `attempt` of `maxAttempts`."""

    event_type: Literal["BatchSyncRetryScheduled"] = "BatchSyncRetryScheduled"
    retry_run_id: UUID
    request_id: str = Field(min_length=1, max_length=200)
    attempt: int = Field(ge=1)
    max_attempts: int = Field(ge=1)
    failed_error_code: ErrorCode | None = None


class BatchRowRejected(Event):
    """A row the run set aside under the batch's `errorLimit`, on `P.rejected` (keyed by batchId): the row as
    the source gave it (values as JSON; what JSON cannot hold as text) and why it was refused. Its `eventId` is
    derived from the run's checkpoint chain, chunk and row, so a row told again after a crash keeps its id."""

    event_type: Literal["BatchRowRejected"] = "BatchRowRejected"
    chunk: int = Field(ge=1)
    row: dict[str, Any]
    reason: str


class BatchSliceCompleted(Event):
    """One slice of a split run ended (docs/spec.md §10): which slice, its range of the source, the worker that
    ran it and what it moved. The run's own `BatchSyncCompleted` follows once every slice has ended."""

    event_type: Literal["BatchSliceCompleted"] = "BatchSliceCompleted"
    slice: int = Field(ge=0)
    range: dict[str, Any]
    """The slice's range: `column`, `kind`, `lo` (inclusive), `hi` (exclusive), null bounds open, and `nulls`."""
    worker_id: str | None = None
    success: bool
    records_synced: int = 0
    records_read: int = 0
    records_rejected: int = 0
    message: str = ""
    error_code: ErrorCode | None = None
    duration_ms: int = 0


LifecycleEvent = (BatchSyncStarted | BatchSyncProgress | BatchSyncCompleted | BatchSyncSkipped
                  | BatchSyncRetryScheduled | BatchSliceCompleted)
"""The events a run tells about itself on `P.events`: the one list of them. The parsers below, the
history fold table (service/history/folds.py) and the generated schemas all derive from it, so adding an
event is its model here, added to this union, and its fold entry (docs/events.md)."""

lifecycle_event_adapter: TypeAdapter[LifecycleEvent] = TypeAdapter(
    Annotated[LifecycleEvent, Field(discriminator="event_type")]
)
"""Parses a lifecycle event by its `eventType`; any other type is a validation error (the DLQ's)."""

LIFECYCLE_EVENTS: tuple[type[LifecycleEvent], ...] = get_args(LifecycleEvent)

ALL_EVENTS: tuple[type[Event], ...] = (BatchSyncRequested, *LIFECYCLE_EVENTS, BatchRowRejected)
"""Every message of the contract: the request (a command), the lifecycle events and rejected rows."""

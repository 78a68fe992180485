"""Tables of the state store.

- `connections`, `batches`: configuration (the API writes them).
- `runs`: one row per execution; the worker owns it through a lease and records counts and the
  mirrored checkpoint. A partial unique index lets only one RUNNING run per batch exist.
- `request_ledger`: every `requestId` ever seen, mapped to its run: the idempotency record.
- `outbox`: events written in the same transaction as the state they describe, relayed to Kafka.
- `run_history`, `projected_events`, `consumer_offsets`: the projection of the events topic and
  the offsets it was built from, committed together.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from schemas.status import ACTIVE, BatchStatus, RunStatus, sql_list

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Connection(Base):
    """A connection at rest: `url`, `params`, `options` in their public form (every secret masked) and
    the secrets themselves sealed in `secrets` by the key `secrets_key_id` names (docs/spec.md §7)."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(20))
    url: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    secrets: Mapped[str | None] = mapped_column(Text)
    secrets_key_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now(), onupdate=func.now())


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    source_connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"))
    source: Mapped[dict[str, Any]] = mapped_column(JSONB)
    target_connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"))
    target: Mapped[dict[str, Any]] = mapped_column(JSONB)
    mapping: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    chunk_size: Mapped[int | None] = mapped_column(Integer)
    config_version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    status: Mapped[str] = mapped_column(String(20), server_default=text(f"'{BatchStatus.NEVER_RUN}'"))
    last_sync_time: Mapped[datetime | None] = mapped_column(Timestamp)
    last_success_time: Mapped[datetime | None] = mapped_column(Timestamp)
    last_records_synced: Mapped[int | None] = mapped_column(BigInteger)
    last_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    high_water_mark: Mapped[Any | None] = mapped_column(JSONB)
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    notify: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_limit: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    split: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """`split`: a run is planned into slices spread over the workers (service/slicing, docs/spec.md §10)."""
    next_fire_time: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    """When the schedule fires next; the scheduler claims due batches by it (service/scheduling)."""
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now(), onupdate=func.now())


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("uq_runs_one_running_per_batch", "batch_id", unique=True,
              postgresql_where=text(f"status = '{RunStatus.RUNNING}'")),
        Index("ix_runs_batch_id_created_at", "batch_id", "created_at"),
        Index("ix_runs_active_lease", "lease_until", postgresql_where=text(f"status IN ({sql_list(ACTIVE)})")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(String(200), unique=True)
    correlation_id: Mapped[str] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(249))
    trigger: Mapped[str] = mapped_column(String(20))
    requested_by: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), server_default=text(f"'{RunStatus.PENDING}'"))
    resumed_from_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    checkpoint_key: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    config_hash: Mapped[str | None] = mapped_column(String(64))
    records_read: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    records_written: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    records_rejected: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    source_count: Mapped[int | None] = mapped_column(BigInteger)
    target_count: Mapped[int | None] = mapped_column(BigInteger)
    reconciled: Mapped[bool | None] = mapped_column(Boolean)
    chunks: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    resumed_from_chunk: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    total_estimate: Mapped[int | None] = mapped_column(BigInteger)
    checkpoint: Mapped[Any | None] = mapped_column(JSONB)
    message: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(40))
    cancel_requested_by: Mapped[str | None] = mapped_column(String(200))
    finishing_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """When the run began to publish what it wrote (an overwrite's swap): a cancel after it is too late."""
    waiters: Mapped[list[dict[str, str]] | None] = mapped_column(JSONB)
    """Duplicates of the request that arrived while the run was active: each gets the outcome too."""
    owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    slices: Mapped[int | None] = mapped_column(Integer)
    """How many slices the run was planned into (`run_slices`); None for a run that is not split."""
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class RunSlice(Base):
    """One slice of a split run: its range of the source (the plan, kept so a retry and an audit see the same
    slices), and, like a run, its own lease, counts and outcome. Its checkpoint lives in the target under
    `slicing.slice_key(run.checkpoint_key, slice)`."""

    __tablename__ = "run_slices"
    __table_args__ = (
        Index("ix_run_slices_active_lease", "lease_until", postgresql_where=text(f"status IN ({sql_list(ACTIVE)})")),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("runs.id", ondelete="CASCADE"),
                                              primary_key=True)
    slice: Mapped[int] = mapped_column(Integer, primary_key=True)
    range: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(20), server_default=text(f"'{RunStatus.PENDING}'"))
    owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    """The worker that ran it last (kept after it ends; `owner` is cleared)."""
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    records_read: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    records_written: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    records_rejected: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    chunks: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    message: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(40))
    carried_from_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """A retry's slice that had already succeeded in the run it resumes: carried over, never run again."""
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class RequestLedger(Base):
    __tablename__ = "request_ledger"
    __table_args__ = (Index("ix_request_ledger_last_seen_at", "last_seen_at"),)

    request_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    batch_id: Mapped[int] = mapped_column(Integer)
    first_event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    seen_count: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    first_seen_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class Outbox(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_topic_published_at", "topic", "published_at",
              postgresql_where=text("published_at IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(249))
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)


class RunHistory(Base):
    __tablename__ = "run_history"
    __table_args__ = (
        Index("ix_run_history_batch_id_started_at", "batch_id", "started_at"),
        Index("ix_run_history_finished_at", "finished_at"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    batch_id: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str | None] = mapped_column(String(20))
    requested_by: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    records_synced: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    records_read: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    chunks: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    message: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(40))
    success: Mapped[bool | None] = mapped_column(Boolean)
    resumed_from_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    config_hash: Mapped[str | None] = mapped_column(String(64))
    cancelled_by: Mapped[str | None] = mapped_column(String(200))
    correlation_id: Mapped[str | None] = mapped_column(String(200))
    last_event_at: Mapped[datetime | None] = mapped_column(Timestamp)
    events: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    retried_by_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    retry_attempt: Mapped[int | None] = mapped_column(Integer)
    skipped_fires: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_skipped_fire_at: Mapped[datetime | None] = mapped_column(Timestamp)
    records_rejected: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    source_count: Mapped[int | None] = mapped_column(BigInteger)
    target_count: Mapped[int | None] = mapped_column(BigInteger)
    reconciled: Mapped[bool | None] = mapped_column(Boolean)
    slices_completed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    slices_failed: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class Notification(Base):
    """The delivery log of run notifications (service/notify): one row per run and address, with its attempts.
    `body` is the run's `BatchSyncCompleted` exactly as the events topic carries it."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("uq_notifications_run_id_url", "run_id", "url", unique=True),
        Index("ix_notifications_due", "next_attempt_at", postgresql_where=text("status = 'PENDING'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    batch_id: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), server_default=text("'PENDING'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp, server_default=func.now())
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ProjectedEvent(Base):
    __tablename__ = "projected_events"
    __table_args__ = (Index("ix_projected_events_run_id", "run_id"),)

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))


class ConsumerOffset(Base):
    __tablename__ = "consumer_offsets"

    group_id: Mapped[str] = mapped_column(String(249), primary_key=True)
    topic: Mapped[str] = mapped_column(String(249), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    # A record of the log `next_offset` was read from (service/positions.py): another record at `mark_offset`
    # means the topic was recreated, and the consume loop reads the partition again from its earliest offset.
    mark_offset: Mapped[int | None] = mapped_column(BigInteger)
    mark_digest: Mapped[str | None] = mapped_column(String(64))

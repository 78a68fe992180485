"""schedules, retry policies and notifications of a batch (docs/spec.md §9)

Batches get `schedule`, `retry_policy`, `notify` and `next_fire_time`; run history records skipped fires and
the retry that resumed a failed run; `notifications` is the delivery log of run notifications.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONB = postgresql.JSONB(astext_type=sa.Text())
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("batches", sa.Column("schedule", JSONB, nullable=True))
    op.add_column("batches", sa.Column("retry_policy", JSONB, nullable=True))
    op.add_column("batches", sa.Column("notify", JSONB, nullable=True))
    op.add_column("batches", sa.Column("next_fire_time", TIMESTAMP, nullable=True))
    op.create_index("ix_batches_next_fire_time", "batches", ["next_fire_time"])
    op.add_column("run_history", sa.Column("retried_by_run_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.add_column("run_history", sa.Column("retry_attempt", sa.Integer(), nullable=True))
    op.add_column("run_history", sa.Column("skipped_fires", sa.Integer(), server_default=sa.text("0"),
                                           nullable=False))
    op.add_column("run_history", sa.Column("last_skipped_fire_at", TIMESTAMP, nullable=True))
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("run_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=20), server_default=sa.text("'PENDING'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, server_default=sa.text("now()"), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.text("now()"), nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index("uq_notifications_run_id_url", "notifications", ["run_id", "url"], unique=True)
    op.create_index("ix_notifications_due", "notifications", ["next_attempt_at"],
                    postgresql_where=sa.text("status = 'PENDING'"))


def downgrade() -> None:
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_index("uq_notifications_run_id_url", table_name="notifications")
    op.drop_table("notifications")
    for column in ("last_skipped_fire_at", "skipped_fires", "retry_attempt", "retried_by_run_id"):
        op.drop_column("run_history", column)
    op.drop_index("ix_batches_next_fire_time", table_name="batches")
    for column in ("next_fire_time", "notify", "retry_policy", "schedule"):
        op.drop_column("batches", column)

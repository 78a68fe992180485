"""slices: one run spread over many workers (docs/spec.md §10)

`batches.split` holds the batch's `split`; `runs.slices` counts a split run's slices, planned into
`run_slices` (each with its range, lease, counts and outcome); `run_history` folds `BatchSliceCompleted` into
`slices_completed` and `slices_failed`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("split", postgresql.JSONB(), nullable=True))
    op.add_column("runs", sa.Column("slices", sa.Integer(), nullable=True))
    for column in ("slices_completed", "slices_failed"):
        op.add_column("run_history", sa.Column(column, sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.create_table(
        "run_slices",
        sa.Column("run_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("runs.id", ondelete="CASCADE",
                                                                           name="fk_run_slices_run_id_runs"),
                  nullable=False),
        sa.Column("slice", sa.Integer(), nullable=False),
        sa.Column("range", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(20), server_default=sa.text("'PENDING'"), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker_id", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("records_read", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("records_written", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("records_rejected", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("chunks", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(40), nullable=True),
        sa.Column("carried_from_run_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "slice", name="pk_run_slices"),
    )
    op.create_index("ix_run_slices_active_lease", "run_slices", ["lease_until"],
                    postgresql_where=sa.text("status IN ('PENDING','RUNNING')"))


def downgrade() -> None:
    op.drop_index("ix_run_slices_active_lease", table_name="run_slices")
    op.drop_table("run_slices")
    for column in ("slices_failed", "slices_completed"):
        op.drop_column("run_history", column)
    op.drop_column("runs", "slices")
    op.drop_column("batches", "split")

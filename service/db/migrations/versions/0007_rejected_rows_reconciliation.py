"""rejected rows and reconciliation: a batch's errorLimit, and each run's rejected rows and row counts

`batches.error_limit` holds `errorLimit`; `runs` and `run_history` gain `records_rejected` (rows set aside
under it), and for full runs `source_count`, `target_count` and `reconciled` (docs/spec.md §9).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = ("runs", "run_history")


def upgrade() -> None:
    op.add_column("batches", sa.Column("error_limit", postgresql.JSONB(), nullable=True))
    for table in _COUNTS:
        op.add_column(table, sa.Column("records_rejected", sa.BigInteger(), server_default=sa.text("0"),
                                       nullable=False))
        op.add_column(table, sa.Column("source_count", sa.BigInteger(), nullable=True))
        op.add_column(table, sa.Column("target_count", sa.BigInteger(), nullable=True))
        op.add_column(table, sa.Column("reconciled", sa.Boolean(), nullable=True))


def downgrade() -> None:
    for table in reversed(_COUNTS):
        for column in ("reconciled", "target_count", "source_count", "records_rejected"):
            op.drop_column(table, column)
    op.drop_column("batches", "error_limit")

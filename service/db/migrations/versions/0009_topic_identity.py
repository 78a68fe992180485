"""topic identity: each stored consumer position keeps a mark of the log it was read from

`consumer_offsets.mark_offset` and `mark_digest` name one record read from the partition (its offset and a
digest of it, service/positions.py); the consume loop reads that offset back on every assignment and
periodically, and a different record there means the topic was recreated, so the partition is read again from
its earliest offset (docs/brokers.md). Rows stored before this have no mark and are trusted as they were.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("consumer_offsets", sa.Column("mark_offset", sa.BigInteger(), nullable=True))
    op.add_column("consumer_offsets", sa.Column("mark_digest", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("consumer_offsets", "mark_digest")
    op.drop_column("consumer_offsets", "mark_offset")

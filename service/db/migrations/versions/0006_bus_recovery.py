"""bus recovery: indexes for retention and reconciliation, and the point past which a run cannot be cancelled

Published outbox rows are kept for a retention and compared with the log by time (`published_at`); ledger
and projected-events rows are pruned by age; `runs.finishing_at` records when a run began to publish what it
wrote (an overwrite's swap), after which a cancel is answered as too late.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("finishing_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_outbox_topic_published_at", "outbox", ["topic", "published_at"],
                    postgresql_where=sa.text("published_at IS NOT NULL"))
    op.create_index("ix_request_ledger_last_seen_at", "request_ledger", ["last_seen_at"])
    op.create_index("ix_projected_events_run_id", "projected_events", ["run_id"])
    op.create_index("ix_run_history_finished_at", "run_history", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_run_history_finished_at", table_name="run_history")
    op.drop_index("ix_projected_events_run_id", table_name="projected_events")
    op.drop_index("ix_request_ledger_last_seen_at", table_name="request_ledger")
    op.drop_index("ix_outbox_topic_published_at", table_name="outbox")
    op.drop_column("runs", "finishing_at")

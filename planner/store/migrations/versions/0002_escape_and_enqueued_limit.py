"""Deadline escape and the learned enqueued-token limit.

``batch.cancel_requested_at`` records the intent to cancel a batch whose deadline slack is gone
and ``batch.cancel_sent_at`` the provider's acknowledgement; ``enqueued_limit`` keeps the limit
learned per (provider, model) from ``token_limit_exceeded`` refusals. Plain SQLAlchemy types
only, as in 0001.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.add_column(sa.Column("cancel_requested_at", ts(), nullable=True))
        batch.add_column(sa.Column("cancel_sent_at", ts(), nullable=True))

    op.create_table(
        "enqueued_limit",
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("learned_at", ts(), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("provider", "model", name="pk_enqueued_limit"),
    )


def downgrade() -> None:
    op.drop_table("enqueued_limit")
    with op.batch_alter_table("batch") as batch:
        batch.drop_column("cancel_sent_at")
        batch.drop_column("cancel_requested_at")

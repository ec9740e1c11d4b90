"""The interactive lane's outbox, and an index for retention.

``send`` holds one row per request being sent on the interactive lane: the intent (owner,
attempt, lease) committed before the call, the answer committed right after it, deleted when
the request is settled (``store/sends.py``). ``request.completed_at`` gets an index, as the
retention pass looks finished requests up by it. Plain SQLAlchemy types only, as in 0001.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "send",
        sa.Column("request_id", ID, autoincrement=False, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("sent_at", ts(), nullable=False),
        sa.Column("lease_until", ts(), nullable=False),
        sa.Column("answered_at", ts(), nullable=True),
        sa.Column("answer_json", sa.Text(), nullable=True),
        sa.Column("delivery_id", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["request.id"], name="fk_send_request_id_request"),
        sa.PrimaryKeyConstraint("request_id", name="pk_send"),
    )
    op.create_index("ix_request_completed_at", "request", ["completed_at"])


def downgrade() -> None:
    op.drop_index("ix_request_completed_at", table_name="request")
    op.drop_table("send")

"""Leases on source units (spool files) shared by every replica.

``unit_claim`` holds one row per unit a worker is ingesting: its owner and lease, renewed while
it works and deleted when the unit is done (``store/claims.py``). Plain SQLAlchemy types only,
as in 0001.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "unit_claim",
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("unit", sa.String(512), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("claimed_at", ts(), nullable=False),
        sa.Column("lease_until", ts(), nullable=False),
        sa.PrimaryKeyConstraint("source", "unit", name="pk_unit_claim"),
    )


def downgrade() -> None:
    op.drop_table("unit_claim")

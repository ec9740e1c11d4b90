"""The store's generation: one number that moves with every change to requests, batches or the
ledger (``store/generation.py``).

Prometheus scrapes the daemon every 15 s, and each scrape counted every request by state and
summed the ledger: on a store of two million requests and as many ledger rows, 0.23 s of CPU a
scrape while nothing happened, three times the idle daemon's budget of half a percent of a core.
The metrics now read this one row and reread the rest only when it moved.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "store_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_store_generation"),
    )
    op.bulk_insert(table, [{"id": 1, "generation": 0}])


def downgrade() -> None:
    op.drop_table("store_generation")

"""How many chunks of a batch's results are settled, so collecting resumes where it stopped.

Collect settles a batch's results a chunk at a time (``pipeline/collect.py``): each chunk's sink
files are named after its number and its commit counts it here, so a restart after a crash
delivers the next chunk under the same name as before, and a delivered one is never rewritten
with other lines.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.add_column(
            sa.Column("collected_chunks", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.drop_column("collected_chunks")

"""What calibration learns from: the raw input estimate, and whether a maximum output was given.

``request.est_raw_input_tokens`` is the estimator's own count before the per-model correction
(``core/calibrate.py``), so the correction is learned from the estimator, not from itself.
``request.output_max_given`` tells requests that named their maximum output from those whose
output estimate was a default (only those teach the learned output per source and model).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("request") as batch:
        batch.add_column(sa.Column("est_raw_input_tokens", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("output_max_given", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request") as batch:
        batch.drop_column("output_max_given")
        batch.drop_column("est_raw_input_tokens")

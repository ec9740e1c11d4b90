"""The HTTP intake's OpenAI-compatible files and batches, their lines, and the results served.

``intake_file`` holds uploaded batch inputs and the output/error files planner writes;
``intake_batch`` one row per batch created through ``/v1/batches``; ``intake_line`` one row per
input line (the request it became, or the quarantined line with its reason); ``intake_result``
the record the intake's sink received for each of its requests. Plain SQLAlchemy types only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "intake_file",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", ts(), nullable=False),
        sa.Column("expires_at", ts(), nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_intake_file"),
    )
    op.create_index("ix_intake_file_created_at", "intake_file", ["created_at"])
    op.create_table(
        "intake_batch",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("input_file_id", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("completion_window", sa.String(16), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("output_file_id", sa.String(64), nullable=True),
        sa.Column("error_file_id", sa.String(64), nullable=True),
        sa.Column("created_at", ts(), nullable=False),
        sa.Column("in_progress_at", ts(), nullable=True),
        sa.Column("finalizing_at", ts(), nullable=True),
        sa.Column("completed_at", ts(), nullable=True),
        sa.Column("cancelling_at", ts(), nullable=True),
        sa.Column("cancelled_at", ts(), nullable=True),
        sa.Column("expires_at", ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_intake_batch"),
    )
    op.create_index("ix_intake_batch_created_at", "intake_batch", ["created_at"])
    op.create_table(
        "intake_line",
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("line", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("custom_id", sa.String(512), nullable=True),
        sa.Column("key", sa.String(512), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["intake_batch.id"], name="fk_intake_line_batch_id_intake_batch"
        ),
        sa.PrimaryKeyConstraint("batch_id", "line", name="pk_intake_line"),
    )
    op.create_table(
        "intake_result",
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("record_json", sa.Text(), nullable=False),
        sa.Column("recorded_at", ts(), nullable=False),
        sa.PrimaryKeyConstraint("source", "key", name="pk_intake_result"),
    )


def downgrade() -> None:
    op.drop_table("intake_result")
    op.drop_table("intake_line")
    op.drop_index("ix_intake_batch_created_at", table_name="intake_batch")
    op.drop_table("intake_batch")
    op.drop_index("ix_intake_file_created_at", table_name="intake_file")
    op.drop_table("intake_file")

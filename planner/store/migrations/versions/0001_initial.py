"""Initial schema: request, batch, event, ledger, stage_run.

Plain SQLAlchemy types only (a migration must not change when the models do):
``planner.store.tables.UTCDateTime`` is ``DateTime(timezone=True)`` underneath, and ``Money``
is ``NUMERIC(28, 15)`` on PostgreSQL and ``VARCHAR(40)`` decimal text on SQLite.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(28, 15).with_variant(sa.String(40), "sqlite")


def ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batch",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("remote_id", sa.String(512), nullable=True),
        sa.Column("input_file_id", sa.String(512), nullable=True),
        sa.Column("output_file_id", sa.String(512), nullable=True),
        sa.Column("error_file_id", sa.String(512), nullable=True),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("est_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("created_at", ts(), nullable=False),
        sa.Column("submitted_at", ts(), nullable=True),
        sa.Column("finished_at", ts(), nullable=True),
        sa.Column("collected_at", ts(), nullable=True),
        sa.Column("last_polled_at", ts(), nullable=True),
        sa.Column("next_poll_at", ts(), nullable=True),
        sa.Column("updated_at", ts(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("lease_until", ts(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_batch"),
    )
    op.create_index("ix_batch_state", "batch", ["state"])

    op.create_table(
        "event",
        sa.Column("id", ID, nullable=False),
        sa.Column("ts", ts(), nullable=False),
        sa.Column("entity", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("old_state", sa.String(32), nullable=True),
        sa.Column("new_state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_event"),
    )
    op.create_index("ix_event_entity_entity_id", "event", ["entity", "entity_id"])

    op.create_table(
        "stage_run",
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("last_success_at", ts(), nullable=True),
        sa.Column("last_failure_at", ts(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("stage", name="pk_stage_run"),
    )

    op.create_table(
        "request",
        sa.Column("id", ID, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(200), nullable=True),
        sa.Column("body_json", sa.Text(), nullable=False),
        sa.Column("received_at", ts(), nullable=False),
        sa.Column("deadline", ts(), nullable=True),
        sa.Column("max_output_tokens", sa.Integer(), nullable=True),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("est_input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("est_output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("est_method", sa.String(100), nullable=True),
        sa.Column("lane", sa.String(32), nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("lease_until", ts(), nullable=True),
        sa.Column("updated_at", ts(), nullable=False),
        sa.Column("usage_input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("usage_cached_input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("usage_output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("actual_cost_usd", MONEY, nullable=True),
        sa.Column("interactive_equiv_usd", MONEY, nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("completed_at", ts(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.id"], name="fk_request_batch_id_batch"),
        sa.PrimaryKeyConstraint("id", name="pk_request"),
        sa.UniqueConstraint("source", "key", name="uq_request_source_key"),
    )
    op.create_index("ix_request_batch_id", "request", ["batch_id"])
    op.create_index("ix_request_state_model", "request", ["state", "model"])

    op.create_table(
        "ledger",
        sa.Column("id", ID, nullable=False),
        sa.Column("request_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(200), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("lane", sa.String(32), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", MONEY, nullable=True),
        sa.Column("interactive_equiv_usd", MONEY, nullable=True),
        sa.Column("recorded_at", ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["request.id"], name="fk_ledger_request_id_request"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ledger"),
        sa.UniqueConstraint("request_id", "attempt", name="uq_ledger_request_id_attempt"),
    )
    op.create_index("ix_ledger_recorded_at", "ledger", ["recorded_at"])


def downgrade() -> None:
    op.drop_table("ledger")
    op.drop_table("request")
    op.drop_table("stage_run")
    op.drop_table("event")
    op.drop_table("batch")

"""The policy decision kept with each request, and its budget reservation.

``request.decision`` is the rule id that chose the request's lane (``core.policy.Reason``);
unlike ``reason`` (the last state change's text) it survives completion, so ``status`` and
``report`` can count decisions by rule. ``request.reserved_usd`` is the upper-bound cost in
that lane: while the request is in flight it counts against its budgets (``core/budget.py``),
so a restart or another replica rebuilds every reservation from the request rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(28, 15).with_variant(sa.String(40), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("request") as batch:
        batch.add_column(sa.Column("decision", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reserved_usd", MONEY, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request") as batch:
        batch.drop_column("reserved_usd")
        batch.drop_column("decision")

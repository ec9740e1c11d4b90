"""Request bodies in a table of their own (``request_body``), written once at intake.

A request row changes state five times or more (planned, submitted, succeeded, delivered ...)
and each change rewrote its ~2 KB body with it: five state changes of 20,000 requests took 2.0 s
on SQLite with the bodies in the row, 0.5 s without. The bodies move to ``request_body``, one
row per request; a request compacted by retention (its body was ``{}``) gets none, which is
how a compacted request is told now. The downgrade puts them back (``{}`` for the compacted).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COMPACTED = "{}"  # what retention left in a compacted request's body (store/retention.py)


def upgrade() -> None:
    op.create_table(
        "request_body",
        sa.Column("request_id", BigId, nullable=False, autoincrement=False),
        sa.Column("body_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["request.id"], name="fk_request_body_request_id_request"
        ),
        sa.PrimaryKeyConstraint("request_id", name="pk_request_body"),
    )
    op.execute(
        "INSERT INTO request_body (request_id, body_json) "
        f"SELECT id, body_json FROM request WHERE body_json <> '{COMPACTED}' ORDER BY id"
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite (3.35 and later) drops a plain column in place; a batch copy of the table would
        # drop the table that the ledger, sends and bodies refer to, refused with foreign keys on
        op.execute("ALTER TABLE request DROP COLUMN body_json")
    else:
        op.drop_column("request", "body_json")


def downgrade() -> None:
    op.add_column(
        "request", sa.Column("body_json", sa.Text(), nullable=False, server_default=COMPACTED)
    )
    op.execute(
        "UPDATE request SET body_json = "
        f"COALESCE((SELECT body_json FROM request_body WHERE request_id = request.id), "
        f"'{COMPACTED}')"
    )
    if op.get_bind().dialect.name != "sqlite":  # SQLite keeps the default: a copy would be refused
        op.alter_column("request", "body_json", server_default=None)
    op.drop_table("request_body")

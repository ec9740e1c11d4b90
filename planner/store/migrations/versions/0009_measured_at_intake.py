"""What intake measured of each request, so planning never encodes or tokenizes it again.

``request.measured_*`` hold ``core.model.Measured``: the body's and the batch line's bytes, the
content fingerprint, the raw input count with its encoding and method, the maximum output the
request names and its number of embedding inputs: planning reads these instead of the body.
Rows stored before (or by an intake that did not measure) leave them empty and are measured
when planned.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("measured_body_bytes", sa.BigInteger()),
    ("measured_line_bytes", sa.BigInteger()),
    ("measured_digest", sa.LargeBinary(16)),
    ("measured_encoding", sa.String(64)),
    ("measured_input_tokens", sa.BigInteger()),
    ("measured_method", sa.String(100)),
    ("measured_output_given", sa.BigInteger()),
    ("measured_embedding_inputs", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("request") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)

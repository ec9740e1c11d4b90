"""The requests indexed by state in id order (``ix_request_state_id``), not by state and model.

A planning round takes the next ``PLAN_CHUNK`` queued or held requests after the last id it
saw, and a claim the oldest unclaimed ones. The ``(state, model)`` index has them by model
first, so every round read every request still queued and sorted them to take 20,000: a round
cost time in proportion to the queue, and a queue of a million took fifty such rounds.
``(state, id)`` gives each state's requests in id order from where the last round stopped
(``store.requests.queued_for_planning``). The old index goes rather than both being kept:
each state change of a request rewrites its entry in every index on ``state``, and the one
query that also names a model (a claim for one model) finds its rows through ``(state, id)``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_request_state_id", "request", ["state", "id"])
    op.drop_index("ix_request_state_model", table_name="request")


def downgrade() -> None:
    op.create_index("ix_request_state_model", "request", ["state", "model"])
    op.drop_index("ix_request_state_id", table_name="request")

"""Rejected requests whose dead-letter line is still to be written, and marking it written.

A request the policy rejects (unpriced, too large, over budget ...) is terminal at once, but its
source still expects one line for it (``pipeline/deliver.py``: every request ends with exactly
one result or dead-letter line). Planning records the rejection and its ``reason``
(``"<rule>: <detail>"``) and nothing else; the line is written afterwards, and the written
state is ``error_message`` (set to the reason once the line is out, so ``status`` and
``requeue`` show it like any other dead letter's error). So no column and no change to planning
were needed, and a crash between the write and the mark rewrites the same file (the delivery is
named after the rows it holds).

Rows are taken oldest rejection first, one rejection time at a time: every row rejected in one
planning round shares its ``updated_at``, so the set named by a delivery does not change if
another round rejects more meanwhile. Rows compacted by retention are never taken.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from planner.core.states import RequestState
from planner.store._sql import rowcount, translated
from planner.store.requests import _COLUMNS, StoredRequest, _stored
from planner.store.tables import HAS_BODY, REQUEST

_UNDELIVERED = (
    REQUEST.c.state == RequestState.REJECTED.value,
    REQUEST.c.error_message.is_(None),
    HAS_BODY,
)


@translated
def undelivered(session: Session, limit: int) -> list[StoredRequest]:
    """Up to ``limit`` rejected requests without their line, all rejected at the same time
    (the oldest such time), in id order; empty when there are none."""
    oldest = session.execute(select(func.min(REQUEST.c.updated_at)).where(*_UNDELIVERED))
    at = oldest.scalar()
    if at is None:
        return []
    query = (
        select(*_COLUMNS)
        .where(*_UNDELIVERED, REQUEST.c.updated_at == at)
        .order_by(REQUEST.c.id)
        .limit(limit)
    )
    return [_stored(row) for row in session.execute(query)]


@translated
def mark_delivered(session: Session, requests: Sequence[StoredRequest]) -> int:
    """Record that these rejected requests' lines are written (their reason as their error);
    ``updated_at`` stays the rejection time."""
    moved = 0
    for request in requests:
        message = request.reason or "rejected"
        result = session.execute(
            update(REQUEST)
            .where(REQUEST.c.id == request.id, *_UNDELIVERED)
            .values(error_message=message)
        )
        moved += rowcount(result)
    return moved

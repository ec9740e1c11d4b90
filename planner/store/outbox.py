"""The outbox of queued sinks (webhooks): records the receiver has not accepted yet.

A row is written by :func:`enqueue` in the transaction that settles its request (with the
ledger and the state change), so a result is either settled *and* waiting for its webhook, or
neither. Senders take due rows with :func:`claim_due` (a lease, ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL as in ``claims.py``, so replicas share the work without sending a row twice at
once), then either :func:`delivered` (the row goes) or :func:`failed` (the next attempt time
and the error are kept, the lease is dropped). A sender that dies leaves its rows to whoever
claims them once the lease ran out; the receiver sees that POST again under the same
idempotency key.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from planner.store._sql import chunks, rowcount, translated
from planner.store.tables import OUTBOX


@dataclass(frozen=True, slots=True)
class Entry:
    """A record for a sink: its idempotency key, ``result`` or ``dead``, the JSON body."""

    sink: str
    key: str
    event: str
    body_json: str


@dataclass(frozen=True, slots=True)
class Pending:
    """An outbox row as a sender sees it."""

    id: int
    sink: str
    key: str
    event: str
    body_json: str
    attempts: int
    created_at: datetime


@translated
def enqueue(session: Session, entries: Sequence[Entry], now: datetime) -> int:
    """Add ``entries`` (a key a sink already holds is left as it is); how many were added."""
    if not entries:
        return 0
    existing: set[tuple[str, str]] = set()
    for chunk in chunks(sorted({e.key for e in entries})):
        found = session.execute(select(OUTBOX.c.sink, OUTBOX.c.key).where(OUTBOX.c.key.in_(chunk)))
        existing.update((str(sink), str(key)) for sink, key in found)
    rows = [
        {
            "sink": e.sink,
            "key": e.key,
            "event": e.event,
            "body_json": e.body_json,
            "created_at": now,
            "attempts": 0,
        }
        for e in {(e.sink, e.key): e for e in entries}.values()
        if (e.sink, e.key) not in existing
    ]
    if rows:
        session.execute(insert(OUTBOX), rows)
    return len(rows)


@translated
def claim_due(
    session: Session,
    owner: str,
    sinks: Collection[str],
    limit: int,
    lease: timedelta,
    now: datetime,
) -> list[Pending]:
    """Lease up to ``limit`` rows of ``sinks`` that are due (oldest first) to ``owner``."""
    candidates = (
        select(OUTBOX.c.id)
        .where(
            OUTBOX.c.sink.in_(list(sinks)),
            OUTBOX.c.owner.is_(None) | (OUTBOX.c.lease_until < now),
            OUTBOX.c.next_attempt_at.is_(None) | (OUTBOX.c.next_attempt_at <= now),
        )
        .order_by(OUTBOX.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("candidates")
    )
    claimed = session.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(select(candidates.c.id)))
        .values(owner=owner, lease_until=now + lease)
        .returning(
            OUTBOX.c.id,
            OUTBOX.c.sink,
            OUTBOX.c.key,
            OUTBOX.c.event,
            OUTBOX.c.body_json,
            OUTBOX.c.attempts,
            OUTBOX.c.created_at,
        )
    ).all()
    return sorted((Pending(*row) for row in claimed), key=lambda p: p.id)


@translated
def delivered(session: Session, row_id: int, owner: str) -> bool:
    """The sink accepted the row: it goes (only if ``owner`` still holds it)."""
    result = session.execute(delete(OUTBOX).where(OUTBOX.c.id == row_id, OUTBOX.c.owner == owner))
    return rowcount(result) == 1


@translated
def failed(
    session: Session, row_id: int, owner: str, next_attempt_at: datetime, error: str
) -> bool:
    """The sink refused or could not be reached: count it, keep why, try at ``next_attempt_at``."""
    result = session.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id == row_id, OUTBOX.c.owner == owner)
        .values(
            attempts=OUTBOX.c.attempts + 1,
            next_attempt_at=next_attempt_at,
            last_error=error,
            owner=None,
            lease_until=None,
        )
    )
    return rowcount(result) == 1


@translated
def release(session: Session, row_ids: Collection[int], owner: str) -> int:
    """Give rows back untried (the pass stopped early)."""
    result = session.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(list(row_ids)), OUTBOX.c.owner == owner)
        .values(owner=None, lease_until=None)
    )
    return rowcount(result)


@translated
def pending_by_sink(session: Session) -> dict[str, int]:
    """How many records each queued sink has not accepted yet."""
    rows = session.execute(
        select(OUTBOX.c.sink, func.count()).group_by(OUTBOX.c.sink).order_by(OUTBOX.c.sink)
    )
    return {str(sink): int(n) for sink, n in rows}

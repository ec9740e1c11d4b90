"""The interactive lane's outbox: an intent before each call, its answer right after it.

No interactive API takes an idempotency key, so a request sent twice is billed twice. The lane
therefore never sends a request whose earlier send has an unknown outcome:

1. :func:`begin` commits ``(request, attempt, owner, lease)`` before the call. It inserts only
   while the request is still waiting in its lane at that attempt and no other send of it
   exists, so two workers (or replicas) never send the same request.
2. :func:`answer` commits what the provider said right after the call (the answer is the
   caller's JSON; the store does not interpret it). :func:`withdraw` removes an intent whose
   call provably did nothing (refused before it ran, or never left this host).
3. The settling transaction (ledger, state change) calls :func:`finish`, which deletes the row.

A row that stays is a crash: answered, it is delivered from here; unanswered, nobody knows
whether the provider carried it out, and the caller dead-letters it instead of sending it
again. :func:`assign_delivery` fixes which rows one sink delivery holds before that delivery is
written, so a crash between the sink write and the commit rewrites the same file.

Functions work inside the caller's transaction and never commit, like the rest of the store.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, literal, select, update
from sqlalchemy.orm import Session

from planner.core.states import RequestState
from planner.store._sql import chunks, rowcount, translated
from planner.store.requests import dialect_insert
from planner.store.tables import REQUEST, SEND

SENDABLE = (RequestState.INTERACTIVE, RequestState.FLEX)


@dataclass(frozen=True, slots=True)
class Send:
    """One outbox row."""

    request_id: int
    attempt: int
    owner: str
    sent_at: datetime
    lease_until: datetime
    answered_at: datetime | None
    answer_json: str | None
    delivery_id: str | None


@translated
def begin(
    session: Session, request_id: int, attempt: int, owner: str, now: datetime, lease: timedelta
) -> bool:
    """Record that ``owner`` is about to send ``attempt`` of the request; ``False`` when it
    must not (the request moved on, or another send of it exists). Renews ``owner``'s own
    unanswered intent (a retry after a 429 within the same send)."""
    renewed = session.execute(
        update(SEND)
        .where(
            SEND.c.request_id == request_id,
            SEND.c.owner == owner,
            SEND.c.attempt == attempt,
            SEND.c.answer_json.is_(None),
        )
        .values(lease_until=now + lease)
    )
    if rowcount(renewed):
        return True
    waiting = select(
        REQUEST.c.id,
        literal(attempt),
        literal(owner),
        literal(now, SEND.c.sent_at.type),
        literal(now + lease, SEND.c.lease_until.type),
    ).where(
        REQUEST.c.id == request_id,
        REQUEST.c.attempts == attempt,
        REQUEST.c.state.in_([s.value for s in SENDABLE]),
    )
    statement = (
        dialect_insert(session, SEND)
        .from_select(["request_id", "attempt", "owner", "sent_at", "lease_until"], waiting)
        .on_conflict_do_nothing(index_elements=["request_id"])
        .returning(SEND.c.request_id)  # psycopg reports no rowcount for INSERT … SELECT
    )
    return len(session.execute(statement).all()) == 1


@translated
def answer(session: Session, request_id: int, owner: str, answer_json: str, now: datetime) -> bool:
    """Store the provider's answer to ``owner``'s send; ``False`` if the intent is gone (it
    was given up as unknown meanwhile: the answer is then not used)."""
    result = session.execute(
        update(SEND)
        .where(
            SEND.c.request_id == request_id,
            SEND.c.owner == owner,
            SEND.c.answer_json.is_(None),
        )
        .values(answer_json=answer_json, answered_at=now)
    )
    return rowcount(result) == 1


@translated
def withdraw(session: Session, request_id: int, owner: str) -> bool:
    """Remove ``owner``'s unanswered intent: the call did not happen or did nothing."""
    result = session.execute(
        delete(SEND).where(
            SEND.c.request_id == request_id,
            SEND.c.owner == owner,
            SEND.c.answer_json.is_(None),
        )
    )
    return rowcount(result) == 1


@translated
def assign_delivery(session: Session, request_ids: Collection[int], delivery_id: str) -> None:
    """Name the delivery these rows go out in; a row that already has one keeps it."""
    for chunk in chunks(sorted(request_ids)):
        session.execute(
            update(SEND)
            .where(SEND.c.request_id.in_(chunk), SEND.c.delivery_id.is_(None))
            .values(delivery_id=delivery_id)
        )


@translated
def finish(session: Session, request_ids: Collection[int]) -> int:
    """Delete the rows of settled requests (in the settling transaction)."""
    deleted = 0
    for chunk in chunks(sorted(request_ids)):
        deleted += rowcount(session.execute(delete(SEND).where(SEND.c.request_id.in_(chunk))))
    return deleted


@translated
def load(session: Session) -> list[Send]:
    """Every outbox row, by request id. The outbox holds at most the sends in flight, a few
    per worker, so reading it whole is cheap."""
    query = select(SEND).order_by(SEND.c.request_id)
    return [Send(**row._mapping) for row in session.execute(query)]

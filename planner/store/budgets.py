"""What counts against budgets, read from the rows themselves (``core/budget.py`` adds it up).

There is no budget counter to keep in step: ``spent`` is the ledger (what was billed, by
``recorded_at``) and ``reserved`` is the ``reserved_usd`` of every request still in flight
(planned, submitted, or sent on the interactive or flex lane). A collected request leaves the
in-flight states in the transaction that writes its ledger row, so its reservation turns into
its actual cost at once; a restart, or a second replica on the same database, sees the same
sums. Money is summed in Python with ``Decimal`` (SQLite keeps it as text), exact on both
backends.

Also here: the decisions by rule (``request.decision``), for ``status`` and ``report``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from planner.core.states import RequestState
from planner.store._sql import CHUNK, among, chunks, rowcount, translated
from planner.store.tables import LEDGER, REQUEST

IN_FLIGHT: tuple[RequestState, ...] = (
    RequestState.PLANNED,
    RequestState.SUBMITTED,
    RequestState.INTERACTIVE,
    RequestState.FLEX,
)
"""The states whose reservation counts: decided and possibly billed, not yet settled."""


@translated
def reserved_by_source(session: Session) -> dict[str, Decimal]:
    """The in-flight requests' reservations, per source."""
    query = select(REQUEST.c.source, REQUEST.c.reserved_usd).where(
        REQUEST.c.state.in_([s.value for s in IN_FLIGHT]), REQUEST.c.reserved_usd.is_not(None)
    )
    found: dict[str, Decimal] = {}
    for source, amount in session.execute(query.execution_options(yield_per=CHUNK)):
        found[source] = found.get(source, Decimal(0)) + amount
    return found


@translated
def spent_by_source(session: Session, since: datetime) -> dict[str, Decimal]:
    """What the ledger billed at or after ``since``, per source (unpriced rows count 0)."""
    query = select(LEDGER.c.source, LEDGER.c.cost_usd).where(
        LEDGER.c.recorded_at >= since, LEDGER.c.cost_usd.is_not(None)
    )
    found: dict[str, Decimal] = {}
    for source, amount in session.execute(query.execution_options(yield_per=CHUNK)):
        found[source] = found.get(source, Decimal(0)) + amount
    return found


@translated
def record_decisions(
    session: Session, decisions: Iterable[tuple[int, str, Decimal | None]], now: datetime
) -> int:
    """Keep each request's decision (rule id) and its reservation: ``(id, rule, usd)``."""
    statement = (
        update(REQUEST)
        .where(REQUEST.c.id == bindparam("b_id"))
        .values(
            decision=bindparam("b_rule"),
            reserved_usd=bindparam("b_usd", type_=REQUEST.c.reserved_usd.type),
            updated_at=bindparam("b_now", type_=REQUEST.c.updated_at.type),
        )
    )
    params = [
        {"b_id": request_id, "b_rule": rule, "b_usd": usd, "b_now": now}
        for request_id, rule, usd in decisions
    ]
    updated = 0
    for chunk in chunks(params):
        result = session.connection().execute(statement, list(chunk))
        updated += rowcount(result)
    return updated


@translated
def mark_decisions(session: Session, ids: Iterable[int], rule: str, now: datetime) -> int:
    """Set the decision of the requests ``ids`` to ``rule`` (e.g. ``batch_escaped``, which the
    planner reads before it decides again)."""
    updated = 0
    for chunk in chunks(sorted(set(ids))):
        result = session.execute(
            update(REQUEST).where(among(REQUEST.c.id, chunk)).values(decision=rule, updated_at=now)
        )
        updated += rowcount(result)
    return updated


@translated
def decisions_by_rule(
    session: Session, since: datetime | None = None
) -> dict[tuple[str, str], int]:
    """How many requests each rule sent to each state: ``{(rule, state): n}`` (received at
    or after ``since`` when given; requests never decided are left out)."""
    query = select(REQUEST.c.decision, REQUEST.c.state, func.count()).where(
        REQUEST.c.decision.is_not(None)
    )
    if since is not None:
        query = query.where(REQUEST.c.received_at >= since)
    rows = session.execute(query.group_by(REQUEST.c.decision, REQUEST.c.state)).all()
    return {(rule, state): int(n) for rule, state, n in rows}


@translated
def held_by_source(session: Session) -> dict[str, int]:
    """Requests in state ``held``, per source."""
    rows = session.execute(
        select(REQUEST.c.source, func.count())
        .where(REQUEST.c.state == RequestState.HELD.value)
        .group_by(REQUEST.c.source)
    ).all()
    return {source: int(n) for source, n in rows}

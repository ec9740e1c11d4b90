"""The audit trail: one ``event`` row per state change, written in the same transaction.

Store functions that change a state call :func:`record`; nothing else writes this table, and
nothing ever updates or deletes it. :func:`history` reads it back (tests, ``planner status``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, String, cast, func, insert, literal, select
from sqlalchemy.orm import Session

from planner.store._sql import translated
from planner.store.tables import EVENT, REQUEST


class Entity(StrEnum):
    REQUEST = "request"
    BATCH = "batch"


@dataclass(frozen=True, slots=True)
class Event:
    ts: datetime
    entity: Entity
    entity_id: str
    old_state: str | None
    new_state: str
    reason: str | None


@translated
def record(
    session: Session,
    entity: Entity,
    changes: Iterable[tuple[object, str | None]],
    new_state: str,
    now: datetime,
    reason: str | None,
) -> None:
    """Append one event per ``(entity id, old state)`` in ``changes``."""
    rows = [
        {
            "ts": now,
            "entity": entity.value,
            "entity_id": str(entity_id),
            "old_state": old,
            "new_state": new_state,
            "reason": reason,
        }
        for entity_id, old in changes
    ]
    if rows:
        session.execute(insert(EVENT), rows)


@translated
def record_requests(
    session: Session,
    where: list[ColumnElement[bool]],
    new_state: str,
    now: datetime,
    reason: str | None,
) -> None:
    """Append one event per request matching ``where``, its current state as the old one, in
    one ``INSERT … SELECT`` (no row travels through Python). The caller runs it right before
    the update that moves exactly those rows, with them locked (``transition_requests``)."""
    rows = (
        select(
            literal(now, EVENT.c.ts.type),
            literal(Entity.REQUEST.value, EVENT.c.entity.type),
            cast(REQUEST.c.id, String),
            REQUEST.c.state,
            literal(new_state, EVENT.c.new_state.type),
            literal(reason, EVENT.c.reason.type),
        )
        .where(*where)
        .order_by(REQUEST.c.id)
    )
    columns = ["ts", "entity", "entity_id", "old_state", "new_state", "reason"]
    session.execute(insert(EVENT).from_select(columns, rows))


@translated
def history(session: Session, entity: Entity, entity_id: object) -> list[Event]:
    """Every recorded change of one request or batch, oldest first."""
    result = session.execute(
        select(EVENT.c.ts, EVENT.c.old_state, EVENT.c.new_state, EVENT.c.reason)
        .where(EVENT.c.entity == entity.value, EVENT.c.entity_id == str(entity_id))
        .order_by(EVENT.c.id)
    )
    return [Event(ts, entity, str(entity_id), old, new, reason) for ts, old, new, reason in result]


@translated
def count(session: Session, entity: Entity | None = None) -> int:
    """How many events there are (of one entity kind, if given)."""
    query = select(func.count()).select_from(EVENT)
    if entity is not None:
        query = query.where(EVENT.c.entity == entity.value)
    return int(session.execute(query).scalar_one())

"""Store retention: forget what finished longer ago than ``store.retention``, keep what counts.

What goes, one chunk per call (each call works in the caller's transaction, so a housekeeping
pass commits chunk by chunk and never holds long locks):

- **requests** in a terminal state (``succeeded``, ``dead``, ``rejected``) whose
  ``completed_at`` is older than the cutoff are *compacted*, not deleted: their body is deleted
  (its ``request_body`` row), their metadata, origin and error message are emptied and their
  ``event`` rows deleted. The row itself stays,
  as a tombstone of about a hundred bytes, for two things that depend on it:

  - *ingestion idempotency*: ``(source, key)`` is unique on ``request``, and that constraint is
    what makes a re-dropped spool file (or a re-sent HTTP post) a duplicate. Deleting the row
    would make an old key re-ingest silently and be billed again;
  - *money*: each ``ledger`` row references its request (a foreign key), and every total that
    ``planner status``/``report`` and the ledger-derived counters show is a sum of ledger rows,
    so ledger rows are never deleted or rolled up (they hold numbers only, no content; a
    roll-up would make ``report --since`` inexact and the scraped totals non-monotone).

- **batches** in ``collected`` whose ``collected_at`` is older than the cutoff, whose remote
  cleanup is finished (``next_poll_at`` null, see ``pipeline/collect.py``) and that no request
  still in flight refers to, are deleted with their ``event`` rows; the terminal requests that
  pointed at them lose the link (``batch_id`` null; the ledger keeps the batch id as text).
  A ``cancelled`` batch is collected like any finished one, so it goes the same way.

Nothing in an active state is touched: not queued, held, planned, submitted, interactive, flex
or failed requests, nor batches that are not collected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.orm import Session

from planner.core.states import TERMINAL_REQUEST_STATES, BatchState
from planner.store._sql import CHUNK, among, not_indexed, rowcount, translated
from planner.store.tables import BATCH, COMPACTED_BODY, EVENT, HAS_BODY, REQUEST, REQUEST_BODY

_TERMINAL = sorted(s.value for s in TERMINAL_REQUEST_STATES)


@dataclass(frozen=True, slots=True)
class Purged:
    """What one chunk removed; ``more`` is True when the chunk was full (call again)."""

    requests: int = 0
    batches: int = 0
    events: int = 0
    more: bool = False


@translated
def compact_requests(session: Session, cutoff: datetime, limit: int = CHUNK) -> Purged:
    """Compact up to ``limit`` terminal requests completed before ``cutoff`` (module docstring)."""
    ids = list(
        session.execute(
            select(REQUEST.c.id)
            .where(
                # not by the state index: it read every terminal request and sorted them for
                # each chunk (1.5 s at a million when none was old enough; in id order, 0.3 s)
                not_indexed(REQUEST.c.state).in_(_TERMINAL),
                REQUEST.c.completed_at < cutoff,
                HAS_BODY,
            )
            .order_by(REQUEST.c.id)
            .limit(limit)
        ).scalars()
    )
    if not ids:
        return Purged()
    session.execute(
        update(REQUEST)
        .where(among(REQUEST.c.id, ids), not_indexed(REQUEST.c.state).in_(_TERMINAL))
        .values(metadata_json=COMPACTED_BODY, origin="", error_message=None)
    )
    session.execute(delete(REQUEST_BODY).where(among(REQUEST_BODY.c.request_id, ids)))
    events = rowcount(
        session.execute(
            delete(EVENT).where(
                EVENT.c.entity == "request", EVENT.c.entity_id.in_([str(i) for i in ids])
            )
        )
    )
    return Purged(requests=len(ids), events=events, more=len(ids) == limit)


@translated
def delete_batches(session: Session, cutoff: datetime, limit: int = CHUNK) -> Purged:
    """Delete up to ``limit`` collected batches older than ``cutoff`` (module docstring)."""
    in_flight = exists().where(
        and_(REQUEST.c.batch_id == BATCH.c.id, REQUEST.c.state.not_in(_TERMINAL))
    )
    ids = list(
        session.execute(
            select(BATCH.c.id)
            .where(
                BATCH.c.state == BatchState.COLLECTED.value,
                BATCH.c.collected_at < cutoff,
                BATCH.c.next_poll_at.is_(None),
                ~in_flight,
            )
            .order_by(BATCH.c.id)
            .limit(limit)
        ).scalars()
    )
    if not ids:
        return Purged()
    session.execute(
        update(REQUEST)
        .where(REQUEST.c.batch_id.in_(ids), REQUEST.c.state.in_(_TERMINAL))
        .values(batch_id=None)
    )
    still_linked = set(
        session.execute(
            select(REQUEST.c.batch_id).where(REQUEST.c.batch_id.in_(ids)).distinct()
        ).scalars()
    )  # a guard: never break the foreign key, whatever a concurrent writer did meanwhile
    gone = [i for i in ids if i not in still_linked]
    deleted = rowcount(session.execute(delete(BATCH).where(BATCH.c.id.in_(gone))))
    events = rowcount(
        session.execute(delete(EVENT).where(EVENT.c.entity == "batch", EVENT.c.entity_id.in_(gone)))
    )
    return Purged(batches=deleted, events=events, more=len(ids) == limit)


def purge_chunk(session: Session, cutoff: datetime, limit: int = CHUNK) -> Purged:
    """One chunk of each kind; call again (in a new transaction) while ``more``."""
    requests = compact_requests(session, cutoff, limit)
    batches = delete_batches(session, cutoff, limit)
    return Purged(
        requests.requests,
        batches.batches,
        requests.events + batches.events,
        requests.more or batches.more,
    )

"""Batches in the store: the write-ahead intent, compare-and-set state changes, and reads.

The intent (:func:`create_batch_intent`) commits the batch row as ``planned`` together with its
requests ``queued -> planned`` before any provider call, carrying our own id (``plb_…``) that
the provider call then puts in the display name / metadata, so a restart can reconcile instead
of creating twice. Every later move is :func:`transition_batch`: ``UPDATE … WHERE state IN
expected [AND claimed_by = me AND lease_until > now]`` with ``version + 1`` — zero rows means
another worker moved it or the lease was lost, and the caller must not call the provider.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, insert, select, update
from sqlalchemy.orm import Session

from planner.core.admission import InUse
from planner.core.model import Endpoint, Lane
from planner.core.states import (
    FINISHED_BATCH_STATES,
    BatchState,
    RequestState,
    batch_transition_allowed,
)
from planner.errors import StoreError
from planner.store import events
from planner.store._sql import CHUNK, checked_fields, chunks, rowcount, translated
from planner.store.requests import transition_requests
from planner.store.tables import BATCH, REQUEST

BATCH_ID_PREFIX = "plb_"
AT_PROVIDER = (BatchState.SUBMITTED, BatchState.RUNNING)
"""Accepted by the provider and not finished: what its enqueued-token queue holds."""
UNFINISHED = (BatchState.PLANNED, BatchState.UPLOADING, *AT_PROVIDER)
"""Batches whose tokens count against the queue when planning more (they will be sent)."""
_RESERVED = frozenset({"id", "state", "updated_at", "version", "created_at"})


def new_batch_id() -> str:
    """A fresh id of ours for a batch: ``plb_`` and 32 hex digits (fits every provider field)."""
    return BATCH_ID_PREFIX + uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Batch:
    """A snapshot of one batch row."""

    id: str
    provider: str
    model: str
    endpoint: Endpoint
    state: BatchState
    reason: str | None
    remote_id: str | None
    input_file_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    request_count: int
    bytes: int
    est_input_tokens: int
    created_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    collected_at: datetime | None
    last_polled_at: datetime | None
    next_poll_at: datetime | None
    updated_at: datetime
    error_message: str | None
    attempt: int
    claimed_by: str | None
    lease_until: datetime | None
    version: int
    cancel_requested_at: datetime | None = None
    cancel_sent_at: datetime | None = None
    collected_chunks: int = 0  # chunks of its results settled (pipeline/collect.py)


def _batch(row: Any) -> Batch:
    values = dict(row._mapping)
    values["endpoint"] = Endpoint(values["endpoint"])
    values["state"] = BatchState(values["state"])
    return Batch(**values)


@translated
def create_batch_intent(
    session: Session,
    batch_id: str,
    provider: str,
    model: str,
    endpoint: Endpoint,
    request_ids: Sequence[int],
    now: datetime,
    *,
    bytes: int = 0,
    est_input_tokens: int = 0,
    owner: str | None = None,
    expected: Collection[RequestState] = (RequestState.QUEUED, RequestState.HELD),
) -> None:
    """Record the intent: batch ``planned`` and its requests ``-> planned`` (lane ``batch``).

    All or nothing: if any request is not in an ``expected`` state (or, with ``owner``, not
    held by that worker), raises ``StoreError`` and the caller's transaction must roll back.
    """
    ids = sorted(set(request_ids))
    if not ids:
        raise StoreError(f"batch {batch_id} has no requests")
    session.execute(
        insert(BATCH).values(
            id=batch_id,
            provider=provider,
            model=model,
            endpoint=Endpoint(endpoint).value,
            state=BatchState.PLANNED.value,
            request_count=len(ids),
            bytes=bytes,
            est_input_tokens=est_input_tokens,
            created_at=now,
            updated_at=now,
            attempt=0,
            version=0,
        )
    )
    events.record(session, events.Entity.BATCH, [(batch_id, None)], BatchState.PLANNED, now, None)
    moved = transition_requests(
        session,
        ids,
        RequestState.PLANNED,
        now,
        expected=expected,
        reason=f"packed into {batch_id}",
        owner=owner,
        batch_id=batch_id,
        provider=provider,
        lane=Lane.BATCH.value,
    )
    if moved != len(ids):
        raise StoreError(
            f"batch {batch_id}: only {moved} of {len(ids)} requests were still available"
        )


def _expected_batch_states(
    new: BatchState, expected: Collection[BatchState | str]
) -> frozenset[BatchState]:
    olds = frozenset(BatchState(old) for old in expected)
    if not olds:
        raise StoreError("transition_batch needs at least one expected state")
    illegal = sorted(old.value for old in olds if not batch_transition_allowed(old, new))
    if illegal:
        raise StoreError(f"illegal batch transition {', '.join(illegal)} -> {new.value}")
    return olds


def _timestamps(new: BatchState, now: datetime) -> dict[str, datetime]:
    if new is BatchState.SUBMITTED:
        return {"submitted_at": now}
    if new in FINISHED_BATCH_STATES:
        return {"finished_at": now}
    if new is BatchState.COLLECTED:
        return {"collected_at": now}
    return {}


@translated
def transition_batch(
    session: Session,
    batch_id: str,
    expected: Collection[BatchState | str],
    new_state: BatchState | str,
    now: datetime,
    *,
    reason: str | None = None,
    owner: str | None = None,
    **fields: Any,
) -> bool:
    """Compare-and-set a batch from one of ``expected`` to ``new_state``; ``True`` if it moved.

    An ``expected -> new`` pair that ``core.states`` forbids raises ``StoreError``. With
    ``owner``, the batch must be claimed by that worker under an unexpired lease. ``fields`` are
    set in the same write (``remote_id``, file ids, ``error_message`` ...); ``submitted_at``,
    ``finished_at`` and ``collected_at`` default to ``now`` when the state implies them.
    """
    new = BatchState(new_state)
    olds = _expected_batch_states(new, expected)
    values: dict[str, Any] = _timestamps(new, now)
    values.update(checked_fields(BATCH, fields, _RESERVED))
    values.update(state=new.value, updated_at=now, version=BATCH.c.version + 1)
    if reason is not None:
        values["reason"] = reason
    guard: list[ColumnElement[bool]] = [
        BATCH.c.id == batch_id,
        BATCH.c.state.in_([s.value for s in olds]),
    ]
    if owner is not None:
        guard += [BATCH.c.claimed_by == owner, BATCH.c.lease_until > now]
    old = session.execute(select(BATCH.c.state).where(*guard).with_for_update()).scalar()
    if old is None:
        return False
    moved = rowcount(session.execute(update(BATCH).where(*guard).values(values))) == 1
    if moved:
        events.record(session, events.Entity.BATCH, [(batch_id, old)], new.value, now, reason)
    return moved


@translated
def update_batch(
    session: Session,
    batch_id: str,
    now: datetime,
    *,
    expected: Collection[BatchState | str] | None = None,
    owner: str | None = None,
    **fields: Any,
) -> bool:
    """Set fields without a state change (``last_polled_at``, ``next_poll_at``, ``remote_id``
    found by reconciliation ...), guarded like :func:`transition_batch`. No event is written."""
    values = checked_fields(BATCH, fields, _RESERVED)
    values.update(updated_at=now, version=BATCH.c.version + 1)
    guard: list[ColumnElement[bool]] = [BATCH.c.id == batch_id]
    if expected is not None:
        guard.append(BATCH.c.state.in_([BatchState(s).value for s in expected]))
    if owner is not None:
        guard += [BATCH.c.claimed_by == owner, BATCH.c.lease_until > now]
    return rowcount(session.execute(update(BATCH).where(*guard).values(values))) == 1


@translated
def get_batch(session: Session, batch_id: str) -> Batch | None:
    """One batch, or ``None``."""
    row = session.execute(select(BATCH).where(BATCH.c.id == batch_id)).first()
    return _batch(row) if row is not None else None


@translated
def batches_in(
    session: Session,
    states: Iterable[BatchState | str],
    *,
    provider: str | None = None,
    due_by: datetime | None = None,
) -> list[Batch]:
    """Batches in any of ``states``, oldest first; with ``due_by``, only those whose
    ``next_poll_at`` is unset or not later than it."""
    query = select(BATCH).where(BATCH.c.state.in_([BatchState(s).value for s in states]))
    if provider is not None:
        query = query.where(BATCH.c.provider == provider)
    if due_by is not None:
        query = query.where((BATCH.c.next_poll_at.is_(None)) | (BATCH.c.next_poll_at <= due_by))
    query = query.order_by(BATCH.c.created_at, BATCH.c.id)
    return [_batch(row) for row in session.execute(query)]


@translated
def cleanups_due(session: Session, now: datetime, limit: int) -> list[Batch]:
    """Collected batches whose remote files are due for deletion (``next_poll_at`` on a
    collected batch is the cleanup time, ``pipeline/collect.py``), most overdue first."""
    query = (
        select(BATCH)
        .where(
            BATCH.c.state == BatchState.COLLECTED.value,
            BATCH.c.next_poll_at.is_not(None),
            BATCH.c.next_poll_at <= now,
        )
        .order_by(BATCH.c.next_poll_at)
        .limit(limit)
    )
    return [_batch(row) for row in session.execute(query)]


@translated
def states_of(session: Session, batch_ids: Iterable[str]) -> dict[str, BatchState]:
    """The state of each of ``batch_ids`` the store knows (unknown ids are left out)."""
    states: dict[str, BatchState] = {}
    for part in chunks(sorted(set(batch_ids)), CHUNK):
        for row in session.execute(select(BATCH.c.id, BATCH.c.state).where(BATCH.c.id.in_(part))):
            states[row.id] = BatchState(row.state)
    return states


@translated
def request_ids(session: Session, batch_id: str) -> list[int]:
    """The ids of the requests packed into ``batch_id``, in id order."""
    query = select(REQUEST.c.id).where(REQUEST.c.batch_id == batch_id).order_by(REQUEST.c.id)
    return list(session.execute(query).scalars())


@translated
def counts_by_state(session: Session) -> dict[str, int]:
    """Batches per state, every state present (zero when none)."""
    counts = dict.fromkeys((state.value for state in BatchState), 0)
    rows = session.execute(select(BATCH.c.state, func.count()).group_by(BATCH.c.state)).all()
    for state, number in rows:
        counts[state] = int(number)
    return counts


@translated
def oldest_times(session: Session) -> dict[str, datetime]:
    """``pending_batch``: when the oldest batch still at the provider was submitted;
    ``uncollected_batch``: when the oldest finished, not yet collected batch finished. A key is
    left out when no batch is in that condition (its alert then has nothing to fire on)."""
    found: dict[str, datetime] = {}
    queries = (
        ("pending_batch", BATCH.c.submitted_at, AT_PROVIDER),
        ("uncollected_batch", BATCH.c.finished_at, tuple(FINISHED_BATCH_STATES)),
    )
    for key, column, states in queries:
        oldest = session.execute(
            select(func.min(column)).where(BATCH.c.state.in_([s.value for s in states]))
        ).scalar()
        if oldest is not None:
            found[key] = oldest
    return found


@translated
def enqueued_tokens(
    session: Session,
    states: Iterable[BatchState | str] = UNFINISHED,
    *,
    exclude: str | None = None,
) -> dict[tuple[str, str], int]:
    """Estimated input tokens of the batches in ``states`` per (provider, model), leaving out
    the batch ``exclude``; queues with none are absent."""
    query = select(BATCH.c.provider, BATCH.c.model, func.sum(BATCH.c.est_input_tokens)).where(
        BATCH.c.state.in_([BatchState(s).value for s in states])
    )
    if exclude is not None:
        query = query.where(BATCH.c.id != exclude)
    rows = session.execute(query.group_by(BATCH.c.provider, BATCH.c.model)).all()
    return {(provider, model): int(total or 0) for provider, model, total in rows}


@translated
def in_use(session: Session) -> dict[str, InUse]:
    """Per provider, the unfinished batches (planned to finished at the provider) and their
    input bytes: what counts against its account limits (``core/admission.py``)."""
    rows = session.execute(
        select(BATCH.c.provider, func.count(), func.coalesce(func.sum(BATCH.c.bytes), 0))
        .where(BATCH.c.state.in_([s.value for s in UNFINISHED]))
        .group_by(BATCH.c.provider)
    ).all()
    return {provider: InUse(int(n), int(size)) for provider, n, size in rows}


TURNAROUND_SAMPLE = 200  # the latest finished batches per (provider, model) that count


@translated
def turnarounds(
    session: Session, per_model: int = TURNAROUND_SAMPLE
) -> dict[tuple[str, str], list[timedelta]]:
    """Submit-to-finish times of the latest ``per_model`` finished batches per (provider,
    model), for ``core/turnaround.py``. Batches we cancelled (a deadline escape) are left out:
    their time says when we gave up, not how long the provider takes."""
    query = (
        select(BATCH.c.provider, BATCH.c.model, BATCH.c.submitted_at, BATCH.c.finished_at)
        .where(
            BATCH.c.submitted_at.is_not(None),
            BATCH.c.finished_at.is_not(None),
            BATCH.c.cancel_requested_at.is_(None),
        )
        .order_by(BATCH.c.finished_at.desc())
    )
    found: dict[tuple[str, str], list[timedelta]] = {}
    for provider, model, submitted, finished in session.execute(query):
        seen = found.setdefault((provider, model), [])
        if len(seen) < per_model:
            seen.append(max(timedelta(0), finished - submitted))
    return found


@dataclass(frozen=True, slots=True)
class DeadlineGroup:
    """The waiting requests of one active batch that came from one source.

    ``deadline``: the earliest deadline they carry; ``undated_since``: the earliest ingestion
    of those without one (the source's policy default deadline counts from it).
    """

    batch_id: str
    source: str
    requests: int
    deadline: datetime | None
    undated_since: datetime | None


@translated
def deadlines_at_provider(session: Session) -> list[DeadlineGroup]:
    """Per (batch, source), for batches at the provider and not yet being cancelled: how many
    requests still wait in them and their earliest deadlines (see :class:`DeadlineGroup`)."""
    undated = case((REQUEST.c.deadline.is_(None), REQUEST.c.received_at), else_=None)
    query = (
        select(
            REQUEST.c.batch_id,
            REQUEST.c.source,
            func.count(),
            func.min(REQUEST.c.deadline),
            func.min(undated).label("undated_since"),
        )
        .join(BATCH, BATCH.c.id == REQUEST.c.batch_id)
        .where(
            BATCH.c.state.in_([s.value for s in AT_PROVIDER]),
            BATCH.c.cancel_requested_at.is_(None),
            REQUEST.c.state == RequestState.SUBMITTED.value,
        )
        .group_by(REQUEST.c.batch_id, REQUEST.c.source)
        .order_by(REQUEST.c.batch_id, REQUEST.c.source)
    )
    return [
        DeadlineGroup(batch_id, source, int(count), deadline, since)
        for batch_id, source, count, deadline, since in session.execute(query)
    ]


@translated
def request_cancel(session: Session, batch_id: str, now: datetime, reason: str) -> bool:
    """Record the intent to cancel a batch at the provider (before the call is made); ``False``
    if it is no longer at the provider or a cancel was already requested."""
    guard = (
        BATCH.c.id == batch_id,
        BATCH.c.state.in_([s.value for s in AT_PROVIDER]),
        BATCH.c.cancel_requested_at.is_(None),
    )
    values = {"cancel_requested_at": now, "reason": reason, "updated_at": now}
    return rowcount(session.execute(update(BATCH).where(*guard).values(values))) == 1


@translated
def cancels_to_send(session: Session) -> list[Batch]:
    """Batches whose cancel was requested but not acknowledged by the provider yet (a crash or
    an error between the intent and the call), oldest request first."""
    query = (
        select(BATCH)
        .where(
            BATCH.c.state.in_([s.value for s in AT_PROVIDER]),
            BATCH.c.cancel_requested_at.is_not(None),
            BATCH.c.cancel_sent_at.is_(None),
        )
        .order_by(BATCH.c.cancel_requested_at, BATCH.c.id)
    )
    return [_batch(row) for row in session.execute(query)]

"""Leases: which worker may act on which rows, for how long.

A claim is ``claimed_by = worker, lease_until = now + lease`` written in one short transaction;
rows are eligible when unclaimed or their lease ran out (rows a worker already holds are not
handed to it again, so "claim until nothing is left" loops end; renew or release them instead). On
PostgreSQL the candidates are picked with ``SELECT … FOR UPDATE SKIP LOCKED`` in a CTE and
claimed by the ``UPDATE … RETURNING`` of the same statement (procrastinate's ``fetch_job``
shape), so concurrent replicas get disjoint rows without waiting on each other. SQLite drops
``FOR UPDATE``; there the transaction's ``BEGIN IMMEDIATE`` serialises claimers, which is
enough on one host.

Each claim counts (``request.claims``): a request whose claims keep growing without progress
crashed its worker (a poison pill); :func:`overclaimed` lists them so the caller can dead-letter
them. Any state change through the store releases the claim and resets the count.

Source units (a spool file) are leased in ``unit_claim`` the same way, one row per unit held:
:func:`lease_unit` takes a unit that nobody holds or whose lease ran out (a compare-and-set on
the row, so of two replicas exactly one wins), :func:`renew_unit` keeps it while the owner
works, :func:`release_unit` deletes it when the unit is done. A replica never recovers a unit
whose lease is live: its owner is still working on it.

``now`` is a parameter like everywhere else. Replicas on several hosts should pass
:func:`database_now` so every lease is measured on one clock, the database's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from planner.core.states import BatchState, RequestState
from planner.errors import StoreError
from planner.store._sql import among, rowcount, translated
from planner.store.tables import BATCH, REQUEST, UNIT_CLAIM


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


@translated
def claim_requests(
    session: Session,
    worker_id: str,
    states: Collection[RequestState],
    limit: int,
    lease: timedelta,
    now: datetime,
    *,
    model: str | None = None,
) -> list[int]:
    """Claim up to ``limit`` requests in ``states`` (oldest first) for ``lease``; their ids."""
    eligible: list[ColumnElement[bool]] = [
        REQUEST.c.state.in_([RequestState(s).value for s in states]),
        REQUEST.c.claimed_by.is_(None) | (REQUEST.c.lease_until < now),
    ]
    if model is not None:
        eligible.append(REQUEST.c.model == model)
    candidates = (
        select(REQUEST.c.id)
        .where(*eligible)
        .order_by(REQUEST.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("candidates")
    )
    statement = (
        update(REQUEST)
        .where(REQUEST.c.id.in_(select(candidates.c.id)))
        .values(claimed_by=worker_id, lease_until=now + lease, claims=REQUEST.c.claims + 1)
        .returning(REQUEST.c.id)
    )
    return sorted(session.execute(statement).scalars().all())


@translated
def release_requests(session: Session, ids: Collection[int], worker_id: str) -> int:
    """Give back requests this worker claimed but did not move (no progress made)."""
    result = session.execute(
        update(REQUEST)
        .where(among(REQUEST.c.id, ids), REQUEST.c.claimed_by == worker_id)
        .values(claimed_by=None, lease_until=None)
    )
    return rowcount(result)


@translated
def release_expired_claims(session: Session, now: datetime) -> int:
    """Requests and batches whose lease ran out are unclaimed (returned to their queue).

    Claiming already treats an expired lease as free; this keeps ``status`` honest and is the
    housekeeping pass. Returns how many rows (requests + batches) were released.
    """
    released = 0
    for table in (REQUEST, BATCH):
        result = session.execute(
            update(table)
            .where(table.c.claimed_by.is_not(None), table.c.lease_until < now)
            .values(claimed_by=None, lease_until=None)
        )
        released += rowcount(result)
    return released


@translated
def overclaimed(
    session: Session, max_claims: int, states: Collection[RequestState] | None = None
) -> list[int]:
    """Requests claimed ``max_claims`` times or more without progress: likely poison pills."""
    query = select(REQUEST.c.id).where(REQUEST.c.claims >= max_claims)
    if states is not None:
        query = query.where(REQUEST.c.state.in_([RequestState(s).value for s in states]))
    return list(session.execute(query.order_by(REQUEST.c.id)).scalars())


@translated
def claim_batches(
    session: Session,
    worker_id: str,
    states: Collection[BatchState],
    limit: int,
    lease: timedelta,
    now: datetime,
    *,
    due_only: bool = True,
) -> list[str]:
    """Claim up to ``limit`` batches in ``states`` (oldest first); with ``due_only``, only
    those whose ``next_poll_at`` is unset or past. Returns their ids."""
    eligible: list[ColumnElement[bool]] = [
        BATCH.c.state.in_([BatchState(s).value for s in states]),
        BATCH.c.claimed_by.is_(None) | (BATCH.c.lease_until < now),
    ]
    if due_only:
        eligible.append(BATCH.c.next_poll_at.is_(None) | (BATCH.c.next_poll_at <= now))
    candidates = (
        select(BATCH.c.id)
        .where(*eligible)
        .order_by(BATCH.c.created_at, BATCH.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("candidates")
    )
    statement = (
        update(BATCH)
        .where(BATCH.c.id.in_(select(candidates.c.id)))
        .values(claimed_by=worker_id, lease_until=now + lease)
        .returning(BATCH.c.id)
    )
    return sorted(session.execute(statement).scalars().all())


@translated
def renew_batch_lease(
    session: Session, batch_id: str, worker_id: str, lease: timedelta, now: datetime
) -> bool:
    """Extend this worker's unexpired lease; ``False`` means it was lost: do not call the
    provider. Call it right before every provider call."""
    result = session.execute(
        update(BATCH)
        .where(
            BATCH.c.id == batch_id,
            BATCH.c.claimed_by == worker_id,
            BATCH.c.lease_until > now,
        )
        .values(lease_until=now + lease)
    )
    return rowcount(result) == 1


@translated
def hold_batch(
    session: Session,
    batch_id: str,
    owner: str,
    lease: timedelta,
    now: datetime,
    *,
    gone: str | None = None,
) -> bool:
    """Take (or keep) the send of an ``uploading`` batch for ``owner``: ``False`` while another
    worker holds a live lease on it (it is sending it now). A lease that ran out, or one held by
    ``gone`` (an owner the caller knows has stopped), is taken over."""
    free = (
        BATCH.c.claimed_by.is_(None) | (BATCH.c.lease_until < now) | (BATCH.c.claimed_by == owner)
    )
    if gone is not None:
        free = free | (BATCH.c.claimed_by == gone)
    result = session.execute(
        update(BATCH)
        .where(BATCH.c.id == batch_id, BATCH.c.state == BatchState.UPLOADING.value, free)
        .values(claimed_by=owner, lease_until=now + lease)
    )
    return rowcount(result) == 1


@translated
def release_batch(session: Session, batch_id: str, worker_id: str) -> bool:
    """Give back a batch this worker holds (e.g. after submitting, so any replica may poll)."""
    result = session.execute(
        update(BATCH)
        .where(BATCH.c.id == batch_id, BATCH.c.claimed_by == worker_id)
        .values(claimed_by=None, lease_until=None)
    )
    return rowcount(result) == 1


@translated
def lease_unit(
    session: Session,
    source: str,
    unit: str,
    owner: str,
    lease: timedelta,
    now: datetime,
    *,
    gone: str | None = None,
) -> bool:
    """Take the lease on ``unit`` of ``source`` for ``owner``; ``False`` if someone else holds
    a live one. A lease of ``owner``'s own, one that ran out, or one held by ``gone`` (an owner
    the caller knows has stopped) is (re)taken."""
    free = (UNIT_CLAIM.c.owner == owner) | (UNIT_CLAIM.c.lease_until < now)
    if gone is not None:
        free = free | (UNIT_CLAIM.c.owner == gone)
    taken = session.execute(
        update(UNIT_CLAIM)
        .where(UNIT_CLAIM.c.source == source, UNIT_CLAIM.c.unit == unit, free)
        .values(owner=owner, claimed_at=now, lease_until=now + lease)
    )
    if rowcount(taken) == 1:
        return True
    insert = pg_insert if _is_postgres(session) else sqlite_insert
    created = session.execute(
        insert(UNIT_CLAIM)
        .values(source=source, unit=unit, owner=owner, claimed_at=now, lease_until=now + lease)
        .on_conflict_do_nothing(index_elements=["source", "unit"])
        .returning(UNIT_CLAIM.c.unit)
    )
    return created.first() is not None


@translated
def unit_owner(session: Session, source: str, unit: str) -> str | None:
    """Who holds the lease on ``unit`` (live or not), if anyone."""
    return session.execute(
        select(UNIT_CLAIM.c.owner).where(UNIT_CLAIM.c.source == source, UNIT_CLAIM.c.unit == unit)
    ).scalar_one_or_none()


@translated
def renew_unit(
    session: Session, source: str, unit: str, owner: str, lease: timedelta, now: datetime
) -> bool:
    """Extend ``owner``'s lease on ``unit``; ``False`` means another worker took it over (the
    lease ran out meanwhile): stop working on the unit."""
    result = session.execute(
        update(UNIT_CLAIM)
        .where(
            UNIT_CLAIM.c.source == source, UNIT_CLAIM.c.unit == unit, UNIT_CLAIM.c.owner == owner
        )
        .values(lease_until=now + lease)
    )
    return rowcount(result) == 1


@translated
def release_unit(session: Session, source: str, unit: str, owner: str) -> bool:
    """Drop ``owner``'s lease on ``unit`` (the unit is done or given back)."""
    result = session.execute(
        delete(UNIT_CLAIM).where(
            UNIT_CLAIM.c.source == source, UNIT_CLAIM.c.unit == unit, UNIT_CLAIM.c.owner == owner
        )
    )
    return rowcount(result) == 1


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (e.g. ``"plan:openai:gpt-4o-mini"``)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@translated
def try_advisory_lock(session: Session, key: str | int) -> bool:
    """Take a transaction-scoped advisory lock on PostgreSQL (released at commit/rollback);
    ``False`` if another transaction holds it. Always ``True`` on SQLite, whose writers are
    serialised anyway. An efficiency lock (one planner per model group), not a safety one."""
    if not _is_postgres(session):
        return True
    number = key if isinstance(key, int) else advisory_key(key)
    result = session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": number})
    return bool(result.scalar_one())


@translated
def advisory_lock(session: Session, key: str | int) -> None:
    """Wait for a transaction-scoped advisory lock on PostgreSQL (released at commit/rollback);
    nothing on SQLite, whose writers are serialised anyway. A safety lock: replicas that read
    a shared sum (a budget) and then add to it take turns."""
    if _is_postgres(session):
        number = key if isinstance(key, int) else advisory_key(key)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": number})


@translated
def database_now(session: Session) -> datetime:
    """The database server's current time (UTC, aware): one clock for every replica's leases."""
    if _is_postgres(session):
        value = session.execute(select(func.clock_timestamp())).scalar_one()
    else:
        raw: object = session.execute(
            select(literal_column("strftime('%Y-%m-%d %H:%M:%f', 'now')"))
        ).scalar_one()
        value = datetime.fromisoformat(str(raw))
    if not isinstance(value, datetime):
        raise StoreError(f"database time is {type(value).__name__}, not datetime")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

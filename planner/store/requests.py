"""Requests in the store: ingestion (idempotent per ``(source, key)``), state changes by
compare-and-set, estimates, and the reads the pipeline stages need.

Every function works inside the caller's transaction (``with factory() as s, s.begin():``) and
never commits itself, so a stage can make several changes atomically. Every state change goes
through :func:`transition_requests`, which checks it against ``core.states``, moves only rows
still in an expected state (the compare-and-set that makes two workers safe), clears the claim,
and appends one ``event`` row per request moved.
"""

from __future__ import annotations

import heapq
import json
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import islice
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    bindparam,
    case,
    exists,
    func,
    null,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from planner.core.flush import QueueSummary, SourceDeadlines
from planner.core.model import BODY_NOT_LOADED, Endpoint, Lane, Measured, Request, TokenEstimate
from planner.core.states import (
    TERMINAL_REQUEST_STATES,
    RequestState,
    request_transition_allowed,
)
from planner.errors import StoreError
from planner.store import events
from planner.store._sql import (
    CHUNK,
    among,
    bind_processors,
    checked_fields,
    chunks,
    not_indexed,
    rowcount,
    translated,
    translated_iter,
    update_many,
)
from planner.store.tables import BODY_JSON, COMPACTED_BODY, REQUEST, REQUEST_BODY, SEND

# A request is (re)sent when it enters one of these; each entry is a new billing attempt.
_ATTEMPT_STATES = frozenset({RequestState.PLANNED, RequestState.INTERACTIVE, RequestState.FLEX})
_RESERVED = frozenset({"id", "source", "key", "state", "updated_at", "attempts", "claims"})


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one :func:`ingest` call did: rows inserted; repeats of a stored request (same key,
    model, endpoint and body: an idempotent no-op); and ``conflicts``, requests whose key is
    stored with a different content (the stored one stands; the caller quarantines these)."""

    inserted: int
    duplicates: int
    conflicts: tuple[Request, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """A request as the store holds it: the ingested value plus what was decided about it."""

    id: int
    request: Request
    state: RequestState
    attempts: int
    provider: str | None
    lane: Lane | None
    batch_id: str | None
    estimate: TokenEstimate | None
    reason: str | None
    decision: str | None = None  # the policy rule that last decided it (core.policy.Reason)


def dialect_insert(session: Session, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ``on_conflict_do_nothing`` on the session's backend."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _row_for(request: Request, now: datetime) -> dict[str, Any]:
    return {
        "source": request.source,
        "key": request.key,
        "model": request.model,
        "endpoint": request.endpoint.value,
        "received_at": request.received_at,
        "deadline": request.deadline,
        "max_output_tokens": request.max_output_tokens,
        "metadata_json": _METADATA_JSON.encode(dict(request.metadata)),
        "origin": request.origin,
        "state": RequestState.QUEUED.value,
        "attempts": 0,
        "claims": 0,
        "updated_at": now,
        **_measured_columns(request.measured),
    }


def _measured_columns(facts: Measured | None) -> dict[str, Any]:
    if facts is None:
        return dict.fromkeys(_MEASURED)
    return {
        "measured_body_bytes": facts.body_bytes,
        "measured_line_bytes": facts.line_bytes,
        "measured_digest": facts.digest,
        "measured_encoding": facts.encoding,
        "measured_input_tokens": facts.input_tokens,
        "measured_method": facts.method,
        "measured_output_given": facts.output_given,
        "measured_embedding_inputs": facts.embedding_inputs,
    }


_MEASURED = (
    "measured_body_bytes",
    "measured_line_bytes",
    "measured_digest",
    "measured_encoding",
    "measured_input_tokens",
    "measured_method",
    "measured_output_given",
    "measured_embedding_inputs",
)


def _shared(text: str | None) -> str | None:
    """One copy of a text that most rows repeat (source, model, provider, batch, method): a
    planning round or a batch holds tens of thousands of rows, each column read as a new
    string."""
    return None if text is None else sys.intern(text)


def _measured_from(
    body_bytes: int,
    line_bytes: int,
    digest: bytes | None,
    encoding: str | None,
    input_tokens: int | None,
    method: str | None,
    output_given: int | None,
    embedding_inputs: int | None,
) -> Measured | None:
    """The facts intake measured, as stored in the :data:`_MEASURED` columns, in their order
    (None: not measured, e.g. stored before 0009)."""
    if method is None or input_tokens is None:
        return None
    return Measured(
        body_bytes,
        line_bytes,
        bytes(digest or b""),
        _shared(encoding),
        input_tokens,
        sys.intern(method),
        output_given,
        embedding_inputs or 0,
    )


@translated
def ingest(session: Session, requests: Iterable[Request], now: datetime) -> IngestResult:
    """Store new requests as ``queued``; a ``(source, key)`` already stored (or repeated in
    ``requests``) is counted as a duplicate and left as it is. Safe to repeat after a crash."""
    seen = 0
    inserted = 0
    conflicts: list[Request] = []
    pending: dict[tuple[str, str], Request] = {}
    for request in requests:
        seen += 1
        identity = (request.source, request.key)
        if identity in pending:
            continue
        pending[identity] = request
        if len(pending) >= CHUNK:
            inserted += _insert_chunk(session, pending, now, conflicts)
            pending = {}
    if pending:
        inserted += _insert_chunk(session, pending, now, conflicts)
    return IngestResult(
        inserted=inserted, duplicates=seen - inserted - len(conflicts), conflicts=tuple(conflicts)
    )


def _insert_chunk(
    session: Session,
    pending: dict[tuple[str, str], Request],
    now: datetime,
    conflicts: list[Request],
) -> int:
    """Insert the new ones; a key already stored with other content goes to ``conflicts``."""
    requests = list(pending.values())
    rows = [_row_for(r, now) for r in requests]
    stored = _insert_new(session, rows, [body_json(r) for r in requests])
    repeats = [r for identity, r in pending.items() if identity not in stored]
    by_source: dict[str, list[Request]] = {}
    for request in repeats:
        by_source.setdefault(request.source, []).append(request)
    for source, group in by_source.items():
        known = stored_contents(session, source, [r.key for r in group])
        for request in group:
            row = known.get(request.key)
            if row is not None and not same_content(row, request):
                conflicts.append(request)
    return len(stored)


@dataclass(frozen=True, slots=True)
class StoredContent:
    """What ingestion compares when a ``(source, key)`` comes again (``same_content``)."""

    model: str
    endpoint: str
    body_json: str


# built once: json.dumps with options builds a new encoder on every call
_BODY_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_METADATA_JSON = json.JSONEncoder(separators=(",", ":"))


def body_json(request: Request) -> str:
    """The body as the store keeps it: compact JSON, the text measured at intake (keys sorted,
    ``pipeline/measure.py``) where there is one, else encoded now (keys as given)."""
    measured = request.measured
    if measured is not None and measured.body_json is not None:
        return measured.body_json
    return _BODY_JSON.encode(request.body)


def content_of(request: Request) -> StoredContent:
    """``request`` as ingestion would store it, for ``same_content``."""
    return StoredContent(request.model, request.endpoint.value, body_json(request))


def stored_contents(session: Session, source: str, keys: Sequence[str]) -> dict[str, StoredContent]:
    """The stored content of those of ``keys`` that ``source`` already has."""
    rows = session.execute(
        select(REQUEST.c.key, REQUEST.c.model, REQUEST.c.endpoint, BODY_JSON).where(
            REQUEST.c.source == source, among(REQUEST.c.key, keys)
        )
    )
    return {row.key: StoredContent(row.model, row.endpoint, row.body_json) for row in rows}


def same_content(
    row: StoredContent, request: Request, same_body: Callable[[str], bool] | None = None
) -> bool:
    """Whether ``request`` repeats the stored ``row`` (an idempotent no-op) rather than
    conflicting with it (same key, another model, endpoint or body: quarantined).
    ``same_body`` compares the stored body JSON with the request's (default: decoded, ``==``;
    ``plan`` reads requests without bodies and compares fingerprints)."""
    if row.body_json == COMPACTED_BODY:
        return True  # compacted by retention: nothing left to compare, so not a conflict
    if (row.model, row.endpoint) != (request.model, request.endpoint.value):
        return False
    if same_body is None:
        return bool(json.loads(row.body_json) == decoded_body(request))
    return same_body(row.body_json)


def decoded_body(request: Request) -> Mapping[str, Any]:
    """``request.body``; for a request read without it (intake's read workers send the text
    the store keeps instead, ``Measured.body_json``), that text decoded."""
    if request.body is not BODY_NOT_LOADED:
        return request.body
    text = request.measured.body_json if request.measured is not None else None
    if text is None:
        raise ValueError(f"request {request.key!r} has neither its body nor its text")
    decoded: Mapping[str, Any] = json.loads(text)
    return decoded


def _insert_new(
    session: Session, rows: list[dict[str, Any]], bodies: list[str]
) -> set[tuple[str, str]]:
    """Insert rows whose ``(source, key)`` is new, each with its body (``bodies``, in the same
    order) in ``request_body``; returns the identities inserted."""
    if session.get_bind().dialect.name == "postgresql":
        ids = _insert_new_unnest(session, rows)
    else:
        ids = _insert_new_values(session, rows)
    new = [
        (ids[identity], body)
        for row, body in zip(rows, bodies, strict=True)
        if (identity := (row["source"], row["key"])) in ids
    ]
    if new:
        _insert_bodies(session, new)
    return set(ids)


def _insert_bodies(session: Session, bodies: list[tuple[int, str]]) -> None:
    """``(request id, body JSON)`` rows into ``request_body``: ``COPY`` on PostgreSQL, one
    prepared statement for all on SQLite."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.exec_driver_sql(
            f"INSERT INTO {REQUEST_BODY.name} (request_id, body_json) VALUES (?, ?)", bodies
        )
        return
    from psycopg import Error as DriverError  # PostgreSQL only: psycopg is its driver

    driver = connection.connection.driver_connection
    if driver is None:
        raise StoreError("the store's connection is closed")
    try:
        with driver.cursor() as cursor:
            copying = f"COPY {REQUEST_BODY.name} (request_id, body_json) FROM STDIN"
            with cursor.copy(copying) as copy:
                for row in bodies:
                    copy.write_row(row)
    except DriverError as exc:
        raise _driver_error(exc) from exc


def _driver_error(exc: Exception) -> StoreError:
    """A raw driver error (SQLAlchemy's translation does not see them) as a ``StoreError``
    with its first line, never the values."""
    message = str(exc).strip()
    first = message.splitlines()[0] if message else ""
    return StoreError(f"database error ({type(exc).__name__}): {first}")


_SQLITE_ROWS_PER_INSERT = 500  # x 25 columns: well under SQLite's 32,766 bound parameters


def _insert_new_values(session: Session, rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """SQLite: multi-row ``INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING RETURNING``, the
    statement SQLAlchemy itself batches an insert with RETURNING into, written once per chunk
    with the values bound in place: its per-row parameter building (a dict, a lookup and a
    check per column) was most of an ingest's time. Each value goes through its column type's
    bind processor for this dialect first, as a bound parameter would (a naive datetime is
    refused; an aware one is stored as SQLAlchemy stores it, with its microseconds)."""
    names = list(rows[0])
    processed = bind_processors(REQUEST, names, session.get_bind().dialect)
    columns = ", ".join(f'"{name}"' for name in names)
    one_row = "(" + ", ".join("?" * len(names)) + ")"
    connection = session.connection()
    stored: dict[tuple[str, str], int] = {}
    for start in range(0, len(rows), _SQLITE_ROWS_PER_INSERT):
        chunk = rows[start : start + _SQLITE_ROWS_PER_INSERT]
        values: list[Any] = []
        for row in chunk:
            line = [row[name] for name in names]
            for i, process in processed:
                line[i] = process(line[i])
            values += line
        statement = (
            f"INSERT INTO {REQUEST.name} ({columns}) VALUES {', '.join([one_row] * len(chunk))} "
            "ON CONFLICT (source, key) DO NOTHING RETURNING source, key, id"
        )
        stored.update(
            ((source, key), id_)
            for source, key, id_ in connection.exec_driver_sql(statement, tuple(values))
        )
    return stored


_STAGING = "planner_ingest_rows"  # a temporary table: private to the connection


def _insert_new_unnest(session: Session, rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """PostgreSQL: the rows are ``COPY``-ed into a temporary table with the request table's
    column types (created once per transaction, dropped at commit, emptied per chunk), then
    moved by one ``INSERT … SELECT … ORDER BY … ON CONFLICT DO NOTHING RETURNING``, in the order
    given. Bound arrays (``unnest``, the way before) spent most of their time quoting every
    element in the driver; COPY sends the values as they are. Each value goes through its
    column type's bind processor first, as a bound parameter would (a naive datetime is
    refused); a database error is a ``StoreError`` with its first line, never the values."""
    names = list(rows[0])
    processed = bind_processors(REQUEST, names, session.get_bind().dialect)
    columns = ", ".join(f'"{name}"' for name in names)
    from psycopg import Error as DriverError  # PostgreSQL only: psycopg is its driver

    driver = session.connection().connection.driver_connection
    if driver is None:
        raise StoreError("the store's connection is closed")
    try:
        with driver.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} ON COMMIT DROP AS "
                f"SELECT 0 AS ord, {columns} FROM {REQUEST.name} WITH NO DATA"
            )
            cursor.execute(f"TRUNCATE {_STAGING}")
            with cursor.copy(f"COPY {_STAGING} (ord, {columns}) FROM STDIN") as copy:
                for number, row in enumerate(rows):
                    values = [row[name] for name in names]
                    for i, process in processed:
                        values[i] = process(values[i])
                    copy.write_row((number, *values))
    except DriverError as exc:
        raise _driver_error(exc) from exc
    moved = session.execute(
        text(
            f"INSERT INTO {REQUEST.name} ({columns}) SELECT {columns} FROM {_STAGING} "
            f"ORDER BY ord ON CONFLICT (source, key) DO NOTHING RETURNING source, key, id"
        )
    )
    return {(row.source, row.key): row.id for row in moved}


def _expected_states(
    new: RequestState, expected: Collection[RequestState | str] | None
) -> frozenset[RequestState]:
    if expected is None:  # a terminal request moves only when its state is named
        return frozenset(
            old
            for old in RequestState
            if request_transition_allowed(old, new) and old not in TERMINAL_REQUEST_STATES
        )
    olds = frozenset(RequestState(old) for old in expected)
    illegal = sorted(old.value for old in olds if not request_transition_allowed(old, new))
    if illegal:
        raise StoreError(f"illegal request transition {', '.join(illegal)} -> {new.value}")
    return olds


@translated
def transition_requests(
    session: Session,
    ids: Iterable[int],
    new_state: RequestState | str,
    now: datetime,
    *,
    expected: Collection[RequestState | str] | None = None,
    reason: str | None = None,
    owner: str | None = None,
    **fields: Any,
) -> int:
    """Move the requests ``ids`` that are still in an ``expected`` state to ``new_state``.

    ``expected`` defaults to every non-terminal state from which the move is legal (a dead
    request goes back to the queue only when ``dead`` is named: the operator's requeue);
    naming a state from
    which it is not raises ``StoreError`` (a bug, not a race). With ``owner``, only requests
    claimed by that worker under an unexpired lease move (the fence after a lost lease).
    ``fields`` sets other columns in the same write (``lane``, ``provider``, ``batch_id``,
    ``error_message`` ...). The claim is released; entering ``planned``/``interactive``/``flex``
    starts a new attempt; entering a terminal state sets ``completed_at``. Returns how many
    moved; the rest were not in an expected state (another worker got there first).
    """
    new = RequestState(new_state)
    olds = _expected_states(new, expected)
    values = checked_fields(REQUEST, fields, _RESERVED)
    values.update(state=new.value, updated_at=now, claimed_by=None, lease_until=None, claims=0)
    if reason is not None:
        values["reason"] = reason
    if new in _ATTEMPT_STATES:
        values["attempts"] = REQUEST.c.attempts + 1
    if new in TERMINAL_REQUEST_STATES:
        values.setdefault("completed_at", now)
    moved = 0
    # PostgreSQL: lock the rows first, so the events written next and the update after them
    # see the same rows (one event per request moved). SQLite needs no lock: its transactions
    # begin IMMEDIATE (engine.py), so this one is the only writer from its first statement
    locking = session.get_bind().dialect.name != "sqlite"
    for chunk in chunks(sorted(set(ids))):
        guard: list[ColumnElement[bool]] = [
            among(REQUEST.c.id, chunk),
            not_indexed(REQUEST.c.state).in_([s.value for s in olds]),
        ]
        if owner is not None:
            guard += [REQUEST.c.claimed_by == owner, REQUEST.c.lease_until > now]
        if locking:
            locked = session.execute(select(REQUEST.c.id).where(*guard).with_for_update()).all()
            if not locked:
                continue
            guard[0] = among(REQUEST.c.id, [row.id for row in locked])
        events.record_requests(session, guard, new.value, now, reason)
        moved += rowcount(session.execute(update(REQUEST).where(*guard).values(values)))
    return moved


@dataclass(frozen=True, slots=True)
class Requeued:
    """One dead-lettered request sent back to the queue by :func:`requeue_dead`."""

    id: int
    source: str
    key: str
    error_message: str


@translated
def requeue_dead(
    session: Session,
    now: datetime,
    *,
    error_code: str,
    source: str | None = None,
    dry_run: bool = False,
) -> list[Requeued]:
    """Send dead-lettered requests whose error is ``error_code`` (e.g. ``unknown_outcome``)
    back to ``queued``, for one more attempt; with ``dry_run``, only list them. Requests
    compacted by retention have lost their body and error, and are never matched."""
    query = select(REQUEST.c.id, REQUEST.c.source, REQUEST.c.key, REQUEST.c.error_message).where(
        REQUEST.c.state == RequestState.DEAD.value,
        REQUEST.c.error_message.startswith(f"{error_code}:", autoescape=True),
    )
    if source is not None:
        query = query.where(REQUEST.c.source == source)
    found = [
        Requeued(row.id, row.source, row.key, row.error_message)
        for row in session.execute(query.order_by(REQUEST.c.id))
    ]
    if found and not dry_run:
        transition_requests(
            session,
            [r.id for r in found],
            RequestState.QUEUED,
            now,
            expected=(RequestState.DEAD,),
            reason=f"requeued by the operator after {error_code}",
            batch_id=None,
            error_message=None,
            completed_at=None,
        )
    return found


@translated
def transition_request(
    session: Session,
    request_id: int,
    new_state: RequestState | str,
    now: datetime,
    *,
    expected: Collection[RequestState | str] | None = None,
    reason: str | None = None,
    owner: str | None = None,
    **fields: Any,
) -> bool:
    """:func:`transition_requests` for one request; ``True`` if it moved."""
    moved = transition_requests(
        session,
        [request_id],
        new_state,
        now,
        expected=expected,
        reason=reason,
        owner=owner,
        **fields,
    )
    return moved == 1


@translated
def refund_attempts(session: Session, ids: Iterable[int], now: datetime) -> int:
    """Take back the attempt the requests ``ids`` started when they were packed, for a batch
    the provider refused before running anything (its enqueued-token queue was full): it says
    nothing about the requests, so it must not bring them closer to the dead letter."""
    refunded = 0
    for chunk in chunks(sorted(set(ids))):
        result = session.execute(
            update(REQUEST)
            .where(among(REQUEST.c.id, chunk), REQUEST.c.attempts > 0)
            .values(attempts=REQUEST.c.attempts - 1, updated_at=now)
        )
        refunded += rowcount(result)
    return refunded


@translated
def record_estimates(
    session: Session, estimates: Iterable[tuple[int, TokenEstimate]], now: datetime
) -> int:
    """Store token estimates (not a state change, so no event). Returns rows updated."""
    statement = (
        update(REQUEST)
        .where(REQUEST.c.id == bindparam("b_id"))
        .values(
            est_input_tokens=bindparam("b_in"),
            est_output_tokens=bindparam("b_out"),
            est_method=bindparam("b_method"),
            updated_at=bindparam("b_now", type_=REQUEST.c.updated_at.type),
        )
    )
    params = [
        {
            "b_id": request_id,
            "b_in": est.input_tokens,
            "b_out": est.output_tokens,
            "b_method": est.method,
            "b_now": now,
        }
        for request_id, est in estimates
    ]
    updated = 0
    for chunk in chunks(params):
        result = session.connection().execute(statement, list(chunk))
        updated += rowcount(result)
    return updated


@dataclass(frozen=True, slots=True)
class Assessed:
    """What planning concluded about one request, kept with it (``record_assessments``)."""

    id: int
    estimate: TokenEstimate
    decision: str  # the policy rule that decided (core.policy.Reason)
    reserved_usd: Decimal | None  # the upper-bound cost in its lane, held while in flight
    raw_input_tokens: int | None  # the estimator's count before calibration (None: not kept)
    output_max_given: bool


_ASSESSED = ("est_input_tokens", "est_output_tokens", "est_method", "decision", "reserved_usd")


@translated
def record_assessments(session: Session, assessed: Iterable[Assessed], now: datetime) -> int:
    """Estimates, decisions, reservations and raw estimates of many requests: one UPDATE per
    request (what :func:`record_estimates`, ``budgets.record_decisions`` and
    ``calibration.record_raw_estimates`` do, in one statement). Returns rows updated."""
    plain: list[tuple[Any, ...]] = []
    kept: list[tuple[Any, ...]] = []  # with the raw estimate (calibration)
    for a in assessed:
        e = a.estimate
        values = (e.input_tokens, e.output_tokens, e.method, a.decision, a.reserved_usd, now)
        if a.raw_input_tokens is None:
            plain.append((*values, a.id))
        else:
            kept.append((*values, a.raw_input_tokens, a.output_max_given, a.id))
    columns = (*_ASSESSED, "updated_at")
    raw = (*columns, "est_raw_input_tokens", "output_max_given")
    return update_many(session, REQUEST, columns, plain) + update_many(session, REQUEST, raw, kept)


@translated
def record_estimate(
    session: Session, request_id: int, estimate: TokenEstimate, now: datetime
) -> bool:
    """:func:`record_estimates` for one request."""
    return record_estimates(session, [(request_id, estimate)], now) == 1


@translated
def queue_summary(session: Session) -> QueueSummary:
    """The queued requests summed up for the flush triggers (``core/flush.py``).

    Requests are estimated when they are planned; until then their input tokens are counted as
    a quarter of their body's length (the fallback rule of ``core/estimate.py``)."""
    queued = REQUEST.c.state == RequestState.QUEUED.value
    tokens_of = case(
        (REQUEST.c.est_input_tokens.is_(None), func.length(BODY_JSON) / 4),
        else_=REQUEST.c.est_input_tokens,
    )
    count, tokens, oldest = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(tokens_of), 0),
            func.min(REQUEST.c.updated_at),
        ).where(queued)
    ).one()
    undated = case((REQUEST.c.deadline.is_(None), REQUEST.c.received_at))
    groups = session.execute(
        select(
            REQUEST.c.source,
            func.min(REQUEST.c.deadline),
            # the column's type, so SQLite's text comes back as an aware UTC datetime too
            func.min(undated, type_=REQUEST.c.received_at.type),
        )
        .where(queued)
        .group_by(REQUEST.c.source)
        .order_by(REQUEST.c.source)
    ).all()
    return QueueSummary(
        count=int(count),
        tokens=int(tokens),
        oldest_waiting=oldest,  # min() keeps the column's type: aware UTC
        deadlines=tuple(
            SourceDeadlines(source, earliest, earliest_undated)
            for source, earliest, earliest_undated in groups
        ),
    )


@translated
def counts_by_state(session: Session) -> dict[str, int]:
    """Requests per state, every state present (zero when none)."""
    counts = dict.fromkeys((state.value for state in RequestState), 0)
    rows = session.execute(select(REQUEST.c.state, func.count()).group_by(REQUEST.c.state)).all()
    for state, number in rows:
        counts[state] = int(number)
    return counts


_COLUMNS = (
    REQUEST.c.id,
    REQUEST.c.source,
    REQUEST.c.key,
    REQUEST.c.model,
    REQUEST.c.endpoint,
    BODY_JSON,
    REQUEST.c.received_at,
    REQUEST.c.deadline,
    REQUEST.c.max_output_tokens,
    REQUEST.c.metadata_json,
    REQUEST.c.origin,
    REQUEST.c.state,
    REQUEST.c.attempts,
    REQUEST.c.provider,
    REQUEST.c.lane,
    REQUEST.c.batch_id,
    REQUEST.c.est_input_tokens,
    REQUEST.c.est_output_tokens,
    REQUEST.c.est_method,
    REQUEST.c.reason,
    REQUEST.c.decision,
    *(REQUEST.c[name] for name in _MEASURED),
)
_BODILESS = tuple(c for c in _COLUMNS if c is not BODY_JSON)


_ENDPOINTS = {e.value: e for e in Endpoint}
_STATES = {s.value: s for s in RequestState}
_LANES = {lane.value: lane for lane in Lane}
_NO_METADATA = "{}"
# planning's columns: the body of a request measured at intake is not read (it needs the facts)
_WITHOUT_MEASURED_BODIES = tuple(
    case((REQUEST.c.measured_method.is_(None), BODY_JSON.element), else_=null()).label("body_json")
    if column is BODY_JSON
    else column
    for column in _COLUMNS
)


_BODY_AT = _COLUMNS.index(BODY_JSON)  # where a row without it lacks it
_MEASURED_AT = len(_COLUMNS) - len(_MEASURED)
_ORDER = (
    *("id", "source", "key", "model", "endpoint", "body_json", "received_at", "deadline"),
    *("max_output_tokens", "metadata_json", "origin", "state", "attempts", "provider", "lane"),
    *("batch_id", "est_input_tokens", "est_output_tokens", "est_method", "reason", "decision"),
    *_MEASURED,
)
if tuple(column.name for column in _COLUMNS) != _ORDER:  # _stored unpacks rows in this order
    raise AssertionError("store.requests: _COLUMNS and _ORDER differ")


def _stored(row: Any, *, body: bool = True) -> StoredRequest:
    """A row of :data:`_COLUMNS` (or :data:`_BODILESS`, with ``body=False``) as a
    :class:`StoredRequest`; a body not read is ``BODY_NOT_LOADED``.

    The row is unpacked by position, once (in :data:`_ORDER`): reading ~30 columns by name
    cost about half of the ~30 us this takes per row, and planning, submitting and collecting
    each read every request of a batch."""
    values = tuple(row) if body else (*row[:_BODY_AT], None, *row[_BODY_AT:])
    (id_, source, key, model, endpoint, text, received_at, deadline) = values[:8]
    (max_output_tokens, metadata, origin, state, attempts, provider, lane) = values[8:15]
    (batch_id, est_input, est_output, est_method, reason, decision) = values[15:_MEASURED_AT]
    measured = values[_MEASURED_AT:]
    request = Request(
        sys.intern(source),
        key,
        sys.intern(model),
        _ENDPOINTS[endpoint],
        BODY_NOT_LOADED if text is None else json.loads(text),
        received_at,
        deadline,
        max_output_tokens,
        {} if metadata == _NO_METADATA else json.loads(metadata),
        origin,
        _measured_from(*measured),
    )
    estimate = None
    if est_input is not None and est_output is not None:
        estimate = TokenEstimate(est_input, est_output, sys.intern(est_method or ""))
    return StoredRequest(
        id_,
        request,
        _STATES[state],
        attempts,
        _shared(provider),
        _LANES[lane] if lane else None,
        _shared(batch_id),
        estimate,
        reason,
        decision,
    )


@translated_iter
def queued_for_planning(
    session: Session,
    limit: int | None = None,
    *,
    model: str | None = None,
    states: Collection[RequestState] = (RequestState.QUEUED,),
    claimed_by: str | None = None,
    after_id: int | None = None,
    unsent: bool = False,
    bodies: bool = True,
) -> Iterator[StoredRequest]:
    """Stream requests waiting for a decision, oldest first, ``yield_per`` a chunk.

    With ``claimed_by``, only the requests that worker holds (after ``claims.claim_requests``);
    with ``after_id``, only those with a larger id (a pass that leaves some queued moves on);
    with ``unsent``, only those with no send in the interactive outbox (``store/sends.py``).
    With ``bodies=False``, a request measured at intake comes without its body
    (``BODY_NOT_LOADED``): planning needs only its facts, and a planning round of 50,000
    decoded bodies was most of the daemon's memory (``load`` reads whole requests).
    Consume it inside the session's transaction.
    """
    if limit is not None and len(set(states)) > 1:
        # a round: each state's next ``limit`` from the (state, id) index, merged by id. One
        # query over all the states read every request in them and sorted them, every round
        parts = [
            list(
                queued_for_planning(
                    session,
                    limit,
                    model=model,
                    states=(state,),
                    claimed_by=claimed_by,
                    after_id=after_id,
                    unsent=unsent,
                    bodies=bodies,
                )
            )
            for state in dict.fromkeys(states)
        ]
        yield from islice(heapq.merge(*parts, key=lambda stored: stored.id), limit)
        return
    columns = _COLUMNS if bodies else _WITHOUT_MEASURED_BODIES
    query = select(*columns).where(REQUEST.c.state.in_([s.value for s in states]))
    if unsent:
        query = query.where(~exists().where(SEND.c.request_id == REQUEST.c.id))
    if after_id is not None:
        query = query.where(REQUEST.c.id > after_id)
    if model is not None:
        query = query.where(REQUEST.c.model == model)
    if claimed_by is not None:
        query = query.where(REQUEST.c.claimed_by == claimed_by)
    query = query.order_by(REQUEST.c.id)
    if limit is not None:
        query = query.limit(limit)
    for row in session.execute(query.execution_options(yield_per=CHUNK)):
        yield _stored(row)


@translated
def load(session: Session, ids: Sequence[int], *, bodies: bool = True) -> list[StoredRequest]:
    """The requests ``ids`` (in id order); ids not in the store are left out. With
    ``bodies=False`` as ``in_batch`` reads them: bodies neither read nor decoded."""
    found: list[StoredRequest] = []
    for chunk in chunks(sorted(set(ids))):
        rows = session.execute(
            select(*(_COLUMNS if bodies else _BODILESS))
            .where(among(REQUEST.c.id, chunk))
            .order_by(REQUEST.c.id)
        )
        found.extend(_stored(row, body=bodies) for row in rows)
    return found


@dataclass(frozen=True, slots=True)
class Member:
    """What collecting needs of every request of a batch before its results are read: which
    key is which request, and whether it is still open (the rest is loaded a chunk at a time)."""

    id: int
    key: str
    state: RequestState


@translated
def batch_members(session: Session, batch_id: str) -> list[Member]:
    """Every request of one batch as a ``Member``, in id order: a fraction of the memory of
    ``in_batch`` (50,000 whole requests were most of collect's peak)."""
    rows = session.execute(
        select(REQUEST.c.id, REQUEST.c.key, REQUEST.c.state)
        .where(REQUEST.c.batch_id == batch_id)
        .order_by(REQUEST.c.id)
    )
    return [Member(row.id, row.key, _STATES[row.state]) for row in rows]


@translated
def get(session: Session, source: str, key: str) -> StoredRequest | None:
    """The request ``(source, key)``, if stored."""
    row = session.execute(
        select(*_COLUMNS).where(REQUEST.c.source == source, REQUEST.c.key == key)
    ).first()
    return _stored(row) if row is not None else None


@translated
def estimated_tokens(session: Session, batch_id: str) -> tuple[int, int]:
    """The estimated input and output tokens of one batch's requests (for the metrics)."""
    row = session.execute(
        select(
            func.coalesce(func.sum(REQUEST.c.est_input_tokens), 0),
            func.coalesce(func.sum(REQUEST.c.est_output_tokens), 0),
        ).where(REQUEST.c.batch_id == batch_id)
    ).one()
    return int(row[0]), int(row[1])


@translated_iter
def wire_rows(session: Session, batch_id: str) -> Iterator[tuple[str, str, Endpoint, str]]:
    """``(key, model, endpoint, body JSON)`` of one batch's requests in id order (the order they
    were packed in): all a batch file is written from, without building whole requests."""
    query = select(REQUEST.c.key, REQUEST.c.model, REQUEST.c.endpoint, BODY_JSON)
    query = query.where(REQUEST.c.batch_id == batch_id).order_by(REQUEST.c.id)
    for key, model, endpoint, body in session.execute(query.execution_options(yield_per=CHUNK)):
        yield key, model, _ENDPOINTS[endpoint], body


@translated_iter
def in_batch(session: Session, batch_id: str, *, bodies: bool = True) -> Iterator[StoredRequest]:
    """Stream the requests of one batch, in id order (the order they were packed in). With
    ``bodies=False`` the bodies are neither read nor decoded and each ``request.body`` is
    empty: for the stages that need keys, states and metadata only (collect, shrink)."""
    query = select(*(_COLUMNS if bodies else _BODILESS))
    query = query.where(REQUEST.c.batch_id == batch_id).order_by(REQUEST.c.id)
    for row in session.execute(query.execution_options(yield_per=CHUNK)):
        yield _stored(row, body=bodies)

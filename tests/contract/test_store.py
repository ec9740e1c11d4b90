"""The store's contract, run on SQLite (a temporary file) and PostgreSQL (a fresh schema).

What it pins down: ingestion is idempotent per (source, key); every state change is checked
against core.states, is a compare-and-set, and writes one event; claims are disjoint between
workers (SKIP LOCKED on PostgreSQL with two real connections) and expire; money and time
survive a round trip exactly; the ledger bills an attempt once.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from planner.core.flush import SourceDeadlines
from planner.core.model import Endpoint, Lane, Request, TokenEstimate, Usage
from planner.core.states import (
    REQUEST_TRANSITIONS,
    BatchState,
    RequestState,
    request_transition_allowed,
)
from planner.core.states import (
    TERMINAL_REQUEST_STATES as TERMINAL,
)
from planner.errors import StoreError
from planner.store import batches, claims, events, generation, ledger, requests, stages
from planner.store.engine import (
    check_url,
    default_sqlite_url,
    deferred,
    make_engine,
    make_session_factory,
    redact_url,
    upgrade,
)
from planner.store.tables import LEDGER, REQUEST, UTCDateTime
from tests.contract.store_backends import backend_url

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)
Q = RequestState.QUEUED
_KEYS = itertools.count()  # unique keys across hypothesis examples sharing one database


@pytest.fixture
def pg_engine(tmp_path: Path) -> Iterator[Engine]:
    """PostgreSQL only: for what only it has (row locks, advisory locks)."""
    with backend_url("postgresql", tmp_path) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    with backend_url("sqlite", tmp_path) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()


def make_request(key: str, *, source: str = "spool", model: str = "gpt-4o-mini") -> Request:
    return Request(
        source=source,
        key=key,
        model=model,
        endpoint=Endpoint.CHAT_COMPLETIONS,
        body={"model": model, "messages": [{"role": "user", "content": f"hi {key} é"}]},
        received_at=NOW,
        deadline=NOW + timedelta(hours=24),
        max_output_tokens=100,
        metadata={"team": "a"},
        origin=f"spool/a.jsonl:{key}",
    )


def ingest(factory: sessionmaker[Session], keys: list[str], **kw: str) -> list[int]:
    with factory() as s, s.begin():
        requests.ingest(s, [make_request(k, **kw) for k in keys], NOW)
    with factory() as s:
        return [stored.id for stored in requests.queued_for_planning(s)]


# --- ingestion ---------------------------------------------------------------------------


def test_ingest_is_idempotent_per_source_and_key(factory: sessionmaker[Session]) -> None:
    lines = [make_request(k) for k in ("a", "b", "c")]
    with factory() as s, s.begin():
        first = requests.ingest(s, lines, NOW)
    with factory() as s, s.begin():
        again = requests.ingest(s, [*lines, make_request("d"), make_request("d")], NOW)
        other_source = requests.ingest(s, [make_request("a", source="http")], NOW)
    assert (first.inserted, first.duplicates) == (3, 0)
    assert (again.inserted, again.duplicates) == (1, 4)
    assert (other_source.inserted, other_source.duplicates) == (1, 0)
    with factory() as s:
        assert requests.counts_by_state(s)["queued"] == 5
        assert sum(requests.counts_by_state(s).values()) == 5


def test_a_request_round_trips(factory: sessionmaker[Session]) -> None:
    original = make_request("k1")
    with factory() as s, s.begin():
        requests.ingest(s, [original], NOW)
    with factory() as s:
        stored = requests.get(s, "spool", "k1")
    assert stored is not None
    assert stored.request == original
    assert stored.state is RequestState.QUEUED
    assert (stored.attempts, stored.lane, stored.batch_id, stored.estimate) == (0, None, None, None)


def test_fifty_thousand_rows_ingest(factory: sessionmaker[Session]) -> None:
    lines = [make_request(f"k{i:05d}") for i in range(50_000)]
    with factory() as s, s.begin():
        result = requests.ingest(s, lines, NOW)
    assert (result.inserted, result.duplicates) == (50_000, 0)
    with factory() as s, s.begin():
        again = requests.ingest(s, lines, NOW)
    assert (again.inserted, again.duplicates) == (0, 50_000)
    with factory() as s:
        assert requests.counts_by_state(s)["queued"] == 50_000
        streamed = sum(1 for _ in requests.queued_for_planning(s))
    assert streamed == 50_000


# --- transitions -------------------------------------------------------------------------


def test_illegal_transitions_are_rejected(factory: sessionmaker[Session]) -> None:
    (rid,) = ingest(factory, ["a"])
    with factory() as s, s.begin():
        with pytest.raises(StoreError, match="illegal request transition queued -> succeeded"):
            requests.transition_requests(s, [rid], RequestState.SUCCEEDED, NOW, expected=[Q])
        with pytest.raises(StoreError, match="illegal batch transition"):
            batches.transition_batch(s, "plb_x", {BatchState.COLLECTED}, BatchState.RUNNING, NOW)
        with pytest.raises(StoreError, match="no column"):
            requests.transition_requests(s, [rid], RequestState.HELD, NOW, colour="red")
        with pytest.raises(StoreError, match="cannot be set"):
            requests.transition_requests(s, [rid], RequestState.HELD, NOW, source="x")
    # A request in a state from which the move is illegal is not moved, and nothing is logged.
    with factory() as s, s.begin():
        assert requests.transition_request(s, rid, RequestState.REJECTED, NOW, reason="unpriced")
    with factory() as s, s.begin():
        assert requests.transition_requests(s, [rid], Q, NOW) == 0
    with factory() as s:
        assert requests.load(s, [rid])[0].state is RequestState.REJECTED
        assert [e.new_state for e in events.history(s, events.Entity.REQUEST, rid)] == ["rejected"]


def test_transition_is_compare_and_set(factory: sessionmaker[Session]) -> None:
    ids = ingest(factory, ["a", "b", "c"])
    with factory() as s, s.begin():
        assert requests.transition_requests(s, ids[:2], RequestState.HELD, NOW, reason="x") == 2
    with factory() as s, s.begin():
        # only "c" is still queued
        moved = requests.transition_requests(
            s, ids, RequestState.INTERACTIVE, NOW, expected=[Q], lane=Lane.INTERACTIVE.value
        )
    assert moved == 1
    with factory() as s:
        loaded = {r.id: r for r in requests.load(s, ids)}
    assert [loaded[i].state for i in ids] == [
        RequestState.HELD,
        RequestState.HELD,
        RequestState.INTERACTIVE,
    ]
    assert loaded[ids[2]].lane is Lane.INTERACTIVE
    assert loaded[ids[2]].attempts == 1
    assert loaded[ids[0]].reason == "x"


def test_every_transition_writes_one_event(factory: sessionmaker[Session]) -> None:
    ids = ingest(factory, ["a", "b"])
    later = NOW + timedelta(seconds=5)
    with factory() as s, s.begin():
        requests.transition_requests(s, ids, RequestState.INTERACTIVE, NOW, reason="urgent")
        requests.transition_requests(s, ids[:1], RequestState.SUCCEEDED, later)
    with factory() as s:
        first = events.history(s, events.Entity.REQUEST, ids[0])
        second = events.history(s, events.Entity.REQUEST, ids[1])
        assert events.count(s, events.Entity.REQUEST) == 3
    assert [(e.old_state, e.new_state, e.reason) for e in first] == [
        ("queued", "interactive", "urgent"),
        ("interactive", "succeeded", None),
    ]
    assert [e.ts for e in first] == [NOW, later]
    assert [(e.old_state, e.new_state) for e in second] == [("queued", "interactive")]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(moves=st.lists(st.sampled_from(list(RequestState)), max_size=8))
def test_transitions_follow_the_state_table(
    factory: sessionmaker[Session], moves: list[RequestState]
) -> None:
    """Whatever sequence of moves is asked for, the store follows core.states exactly and
    logs one event per move actually made."""
    key = f"h{next(_KEYS)}"
    with factory() as s, s.begin():
        requests.ingest(s, [make_request(key)], NOW)
    with factory() as s:
        stored = requests.get(s, "spool", key)
    assert stored is not None
    state = RequestState.QUEUED
    made = 0
    for new in moves:
        with factory() as s, s.begin():
            moved = requests.transition_request(s, stored.id, new, NOW)
        # a terminal state is left only when named (the operator's requeue), never by default
        assert moved == (request_transition_allowed(state, new) and state not in TERMINAL)
        if moved:
            state, made = new, made + 1
    with factory() as s:
        assert requests.load(s, [stored.id])[0].state is state
        assert len(events.history(s, events.Entity.REQUEST, stored.id)) == made


def test_every_state_has_a_way_in_or_is_the_start() -> None:
    reachable = {new for targets in REQUEST_TRANSITIONS.values() for new in targets}
    assert set(RequestState) - reachable <= {RequestState.QUEUED}


# --- batches -----------------------------------------------------------------------------


def test_batch_intent_is_all_or_nothing(factory: sessionmaker[Session]) -> None:
    ids = ingest(factory, ["a", "b", "c"])
    with factory() as s, s.begin():
        requests.transition_request(s, ids[2], RequestState.INTERACTIVE, NOW)
    with pytest.raises(StoreError, match="only 2 of 3"), factory() as s, s.begin():
        batches.create_batch_intent(
            s, "plb_1", "openai", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, ids, NOW
        )
    with factory() as s:
        assert batches.get_batch(s, "plb_1") is None
        assert requests.counts_by_state(s)["planned"] == 0
        assert events.count(s, events.Entity.BATCH) == 0

    batch_id = batches.new_batch_id()
    assert batch_id.startswith("plb_") and len(batch_id) == 36
    with factory() as s, s.begin():
        batches.create_batch_intent(
            s, batch_id, "openai", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, ids[:2], NOW,
            bytes=1234, est_input_tokens=99,
        )  # fmt: skip
    with factory() as s:
        batch = batches.get_batch(s, batch_id)
        packed = requests.load(s, ids[:2])
        assert batches.request_ids(s, batch_id) == ids[:2]
        assert [r.id for r in requests.in_batch(s, batch_id)] == ids[:2]
        assert [e.new_state for e in events.history(s, events.Entity.BATCH, batch_id)] == [
            "planned"
        ]
        assert batches.counts_by_state(s)["planned"] == 1
    assert batch is not None
    assert (batch.state, batch.request_count, batch.bytes, batch.created_at) == (
        BatchState.PLANNED,
        2,
        1234,
        NOW,
    )
    assert all(r.state is RequestState.PLANNED and r.batch_id == batch_id for r in packed)
    assert all(r.lane is Lane.BATCH and r.provider == "openai" for r in packed)


def _planned_batch(factory: sessionmaker[Session], key: str = "a") -> str:
    ids = ingest(factory, [key])
    batch_id = batches.new_batch_id()
    with factory() as s, s.begin():
        batches.create_batch_intent(
            s, batch_id, "gemini", "gemini-2.5-flash", Endpoint.GENERATE_CONTENT, ids, NOW
        )
    return batch_id


def test_batch_transitions_are_compare_and_set_and_fenced(
    factory: sessionmaker[Session],
) -> None:
    batch_id = _planned_batch(factory)
    up = {BatchState.PLANNED}
    with factory() as s, s.begin():
        assert claims.claim_batches(s, "w1", [BatchState.PLANNED], 5, LEASE, NOW) == [batch_id]
        assert claims.claim_batches(s, "w2", [BatchState.PLANNED], 5, LEASE, NOW) == []
    with factory() as s, s.begin():
        assert not batches.transition_batch(s, batch_id, up, BatchState.UPLOADING, NOW, owner="w2")
        assert batches.transition_batch(s, batch_id, up, BatchState.UPLOADING, NOW, owner="w1")
        # the same compare-and-set a second time finds nothing to move
        assert not batches.transition_batch(s, batch_id, up, BatchState.UPLOADING, NOW)
    after_lease = NOW + LEASE + timedelta(seconds=1)
    with factory() as s, s.begin():
        assert not claims.renew_batch_lease(s, batch_id, "w1", LEASE, after_lease)
        assert not batches.transition_batch(
            s,
            batch_id,
            {BatchState.UPLOADING},
            BatchState.SUBMITTED,
            after_lease,
            owner="w1",
            remote_id="batches/123",
        )
        assert claims.claim_batches(s, "w2", [BatchState.UPLOADING], 5, LEASE, after_lease) == [
            batch_id
        ]
        assert batches.transition_batch(
            s,
            batch_id,
            {BatchState.UPLOADING},
            BatchState.SUBMITTED,
            after_lease,
            owner="w2",
            remote_id="batches/123",
        )
        assert claims.release_batch(s, batch_id, "w2")
    with factory() as s:
        batch = batches.get_batch(s, batch_id)
        history = events.history(s, events.Entity.BATCH, batch_id)
    assert batch is not None
    assert (batch.state, batch.remote_id, batch.submitted_at) == (
        BatchState.SUBMITTED,
        "batches/123",
        after_lease,
    )
    assert (batch.claimed_by, batch.version) == (None, 2)
    assert [(e.old_state, e.new_state) for e in history] == [
        (None, "planned"),
        ("planned", "uploading"),
        ("uploading", "submitted"),
    ]


def test_polling_fields_and_due_batches(factory: sessionmaker[Session]) -> None:
    batch_id = _planned_batch(factory)
    later = NOW + timedelta(minutes=5)
    with factory() as s, s.begin():
        assert batches.update_batch(s, batch_id, NOW, last_polled_at=NOW, next_poll_at=later)
        assert not batches.update_batch(s, batch_id, NOW, expected=[BatchState.RUNNING])
    with factory() as s:
        assert batches.batches_in(s, [BatchState.PLANNED], due_by=NOW) == []
        due = batches.batches_in(s, [BatchState.PLANNED], due_by=later, provider="gemini")
        assert [b.id for b in due] == [batch_id]
    with factory() as s, s.begin():
        assert claims.claim_batches(s, "w", [BatchState.PLANNED], 5, LEASE, NOW) == []
        assert claims.claim_batches(s, "w", [BatchState.PLANNED], 5, LEASE, later) == [batch_id]


def test_oldest_pending_and_uncollected_batch_times(factory: sessionmaker[Session]) -> None:
    """What the PlannerBatchOverdue / PlannerBatchNotCollected gauges export."""
    first, second = _planned_batch(factory, "a"), _planned_batch(factory, "b")
    with factory() as s:
        assert batches.oldest_times(s) == {}  # planned only: nothing at the provider yet
    hour = timedelta(hours=1)

    def move(batch_id: str, old: BatchState, new: BatchState, at: datetime) -> None:
        with factory() as s, s.begin():
            assert batches.transition_batch(s, batch_id, {old}, new, at)

    for batch_id, at in ((first, NOW), (second, NOW + hour)):
        move(batch_id, BatchState.PLANNED, BatchState.UPLOADING, at)
        move(batch_id, BatchState.UPLOADING, BatchState.SUBMITTED, at)
    with factory() as s:
        assert batches.oldest_times(s) == {"pending_batch": NOW}
    move(first, BatchState.SUBMITTED, BatchState.SUCCEEDED, NOW + 2 * hour)
    with factory() as s:
        oldest = batches.oldest_times(s)
    assert oldest == {"pending_batch": NOW + hour, "uncollected_batch": NOW + 2 * hour}
    assert oldest["pending_batch"].tzinfo is not None
    move(first, BatchState.SUCCEEDED, BatchState.COLLECTED, NOW + 3 * hour)
    with factory() as s:
        assert batches.oldest_times(s) == {"pending_batch": NOW + hour}


# --- claims ------------------------------------------------------------------------------


def test_claims_are_disjoint_and_leases_expire(factory: sessionmaker[Session]) -> None:
    ids = ingest(factory, [f"k{i}" for i in range(10)])
    with factory() as s, s.begin():
        first = claims.claim_requests(s, "w1", [Q], 6, LEASE, NOW)
    with factory() as s, s.begin():
        second = claims.claim_requests(s, "w2", [Q], 6, LEASE, NOW)
        third = claims.claim_requests(s, "w3", [Q], 6, LEASE, NOW)
    assert first == ids[:6]
    assert second == ids[6:]
    assert third == []
    with factory() as s:
        mine = [r.id for r in requests.queued_for_planning(s, claimed_by="w1")]
    assert mine == first
    expired = NOW + LEASE + timedelta(seconds=1)
    with factory() as s, s.begin():
        # w1 still holds its rows until the lease runs out
        assert claims.claim_requests(s, "w3", [Q], 20, LEASE, NOW + LEASE / 2) == []
        assert claims.release_expired_claims(s, expired) == 10
        assert claims.release_expired_claims(s, expired) == 0
        retaken = claims.claim_requests(s, "w3", [Q], 20, LEASE, expired)
    assert retaken == ids
    with factory() as s:
        assert claims.overclaimed(s, 2, [Q]) == ids
        assert claims.overclaimed(s, 3) == []
    with factory() as s, s.begin():
        assert claims.release_requests(s, ids[:3], "w3") == 3
        assert requests.transition_requests(s, ids[3:5], RequestState.HELD, expired) == 2
    with factory() as s:
        # a state change releases the claim and resets the count
        assert claims.overclaimed(s, 1) == [*ids[:3], *ids[5:]]


def test_moves_by_a_worker_that_lost_its_lease_are_refused(
    factory: sessionmaker[Session],
) -> None:
    ids = ingest(factory, ["a", "b"])
    with factory() as s, s.begin():
        assert claims.claim_requests(s, "w1", [Q], 2, LEASE, NOW) == ids
    expired = NOW + LEASE + timedelta(seconds=1)
    with factory() as s, s.begin():
        assert requests.transition_requests(s, ids, RequestState.HELD, expired, owner="w1") == 0
        assert requests.transition_requests(s, ids, RequestState.HELD, NOW, owner="w2") == 0
        assert requests.transition_requests(s, ids, RequestState.HELD, NOW, owner="w1") == 2


def test_concurrent_claimers_take_every_row_exactly_once(engine: Engine) -> None:
    factory = make_session_factory(engine)
    ingest(factory, [f"k{i:04d}" for i in range(600)])
    taken: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        mine: list[int] = []
        try:
            while True:
                with factory() as s, s.begin():
                    got = claims.claim_requests(s, name, [Q], 25, LEASE, NOW)
                if not got:
                    break
                mine.extend(got)
        except BaseException as exc:  # reported below; a thread cannot fail the test itself
            errors.append(exc)
        taken[name] = mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    every = [rid for got in taken.values() for rid in got]
    assert len(every) == len(set(every)) == 600
    with factory() as s:
        counts = s.execute(select(REQUEST.c.claims).distinct()).scalars().all()
    assert counts == [1]


def test_skip_locked_gives_two_open_transactions_disjoint_rows(pg_engine: Engine) -> None:
    """(SQLite has no row locks: its claimers are serialised by BEGIN IMMEDIATE, which the
    concurrent-claimers test above covers on both backends.)"""
    factory = make_session_factory(pg_engine)
    ids = ingest(factory, [f"k{i}" for i in range(30)])
    with factory() as a, factory() as b:
        a.begin()
        b.begin()
        b.execute(text("SET LOCAL lock_timeout = '5s'"))  # blocking would fail, not hang
        got_a = claims.claim_requests(a, "wa", [Q], 10, LEASE, NOW)
        got_b = claims.claim_requests(b, "wb", [Q], 10, LEASE, NOW)
        assert got_a == ids[:10]
        assert got_b == ids[10:20]
        # a transition waits for nothing either: b moves only what it claimed
        assert requests.transition_requests(b, got_b, RequestState.HELD, NOW, owner="wb") == 10
        a.commit()
        b.commit()


def test_advisory_lock_is_exclusive_per_transaction(pg_engine: Engine) -> None:
    factory = make_session_factory(pg_engine)
    with factory() as a, factory() as b:
        with a.begin():
            assert claims.try_advisory_lock(a, "plan:openai:gpt-4o-mini")
            with b.begin():
                assert not claims.try_advisory_lock(b, "plan:openai:gpt-4o-mini")
                assert claims.try_advisory_lock(b, "plan:openai:other")
        with b.begin():
            assert claims.try_advisory_lock(b, "plan:openai:gpt-4o-mini")
    assert claims.advisory_key("x") == claims.advisory_key("x") != claims.advisory_key("y")


def test_advisory_lock_always_succeeds_on_sqlite(sqlite_engine: Engine) -> None:
    factory = make_session_factory(sqlite_engine)
    with factory() as a, a.begin():
        assert claims.try_advisory_lock(a, "plan:openai:gpt-4o-mini")
        assert claims.try_advisory_lock(a, "plan:openai:gpt-4o-mini")


def test_database_now_is_aware_utc(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        value = claims.database_now(s)
    assert value.tzinfo is UTC


# --- money, time, ledger -----------------------------------------------------------------

AMOUNTS = [
    Decimal("0.000000075"),  # one gemini-2.0-flash-lite batch input token
    Decimal("0.0000000375"),  # one token at half of $0.075 / 1M
    Decimal("0"),
    Decimal("1234567890123.123456789012345"),  # 13 + 15 digits: the widest value
    Decimal("-0.5"),
]


def _billed(factory: sessionmaker[Session], key: str, cost: Decimal | None) -> int:
    ids = ingest(factory, [key])
    with factory() as s, s.begin():
        requests.transition_requests(s, ids, RequestState.INTERACTIVE, NOW, lane="interactive")
        assert ledger.record_result(s, ids[0], Usage(10, 5, 2), cost, cost, NOW)
    return ids[0]


@pytest.mark.parametrize("amount", AMOUNTS, ids=str)
def test_money_round_trips_exactly(factory: sessionmaker[Session], amount: Decimal) -> None:
    rid = _billed(factory, "m", amount)
    with factory() as s:
        cost, equiv = s.execute(
            select(REQUEST.c.actual_cost_usd, REQUEST.c.interactive_equiv_usd).where(
                REQUEST.c.id == rid
            )
        ).one()
        booked = s.execute(select(LEDGER.c.cost_usd)).scalar_one()
    assert isinstance(cost, Decimal)
    assert cost == equiv == booked == amount


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(amount=st.decimals(min_value=0, max_value=10**6, places=15, allow_nan=False))
def test_any_fifteen_place_amount_round_trips(
    factory: sessionmaker[Session], amount: Decimal
) -> None:
    rid = _billed(factory, f"d{next(_KEYS)}", amount)
    with factory() as s:
        stored = s.execute(select(REQUEST.c.actual_cost_usd).where(REQUEST.c.id == rid))
        assert stored.scalar_one() == amount


def test_money_that_would_be_rounded_is_refused(factory: sessionmaker[Session]) -> None:
    (rid,) = ingest(factory, ["a"])
    with factory() as s, s.begin():
        requests.transition_requests(s, [rid], RequestState.INTERACTIVE, NOW, lane="interactive")
        with pytest.raises(StoreError, match="more than 15 decimal places"):
            ledger.record_result(s, rid, Usage(1, 1), Decimal("1e-16"), None, NOW)
        with pytest.raises(StoreError, match="must be a Decimal"):
            ledger.record_result(s, rid, Usage(1, 1), 0.1, None, NOW)  # type: ignore[arg-type]


def test_sqlite_keeps_money_as_text(sqlite_engine: Engine) -> None:
    """(PostgreSQL stores NUMERIC(28, 15) natively; the round-trip tests cover both.)"""
    rid = _billed(make_session_factory(sqlite_engine), "t", Decimal("0.000000075"))
    with sqlite_engine.connect() as c:
        raw = c.exec_driver_sql(
            "SELECT typeof(actual_cost_usd), actual_cost_usd FROM request WHERE id = ?", (rid,)
        ).one()
    assert tuple(raw) == ("text", "0.000000075000000")


def test_time_round_trips_as_aware_utc(factory: sessionmaker[Session]) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2026, 11, 28, 14, 30, 0, 123456, tzinfo=india)
    original = make_request("t")
    with factory() as s, s.begin():
        requests.ingest(
            s,
            [
                Request(
                    source=original.source,
                    key=original.key,
                    model=original.model,
                    endpoint=original.endpoint,
                    body=original.body,
                    received_at=local,
                    deadline=local + timedelta(hours=1),
                )
            ],
            NOW,
        )
    with factory() as s:
        if s.get_bind().dialect.name == "postgresql":
            # the server hands timestamptz back in the session's zone; the store makes it UTC
            s.execute(text("SET TIME ZONE 'Asia/Kolkata'"))
        stored = requests.get(s, "spool", "t")
    assert stored is not None
    received = stored.request.received_at
    assert received == local
    assert received.tzinfo is UTC
    assert received == datetime(2026, 11, 28, 9, 0, 0, 123456, tzinfo=UTC)
    assert stored.request.deadline == local + timedelta(hours=1)


def test_naive_time_is_refused(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin(), pytest.raises(StoreError, match="naive datetime"):
        requests.ingest(s, [make_request("n")], NOW.replace(tzinfo=None))


def test_a_time_bound_again_binds_as_a_fresh_one(factory: sessionmaker[Session]) -> None:
    """UTCDateTime remembers its last value: the same object again, another, an equal one in
    another zone, ``None``, and a naive time (refused every time) bind as a fresh processor
    binds them."""
    bind = factory.kw["bind"]
    dialect = bind.dialect

    def processor() -> Any:
        return UTCDateTime().dialect_impl(dialect).bind_processor(dialect)

    process = processor()
    later = NOW + timedelta(microseconds=1)
    elsewhere = NOW.astimezone(timezone(timedelta(hours=5, minutes=30)))
    for value in (NOW, NOW, later, NOW, elsewhere, elsewhere, None, later, later):
        assert process(value) == processor()(value)
    naive = NOW.replace(tzinfo=None)
    for _ in range(2):
        with pytest.raises(StoreError, match="naive datetime"):
            process(naive)


def test_the_ledger_bills_an_attempt_once(factory: sessionmaker[Session]) -> None:
    ids = ingest(factory, ["a", "b", "c"])
    with factory() as s:
        before = generation.current(s)
    with factory() as s, s.begin():
        requests.transition_requests(s, ids, RequestState.INTERACTIVE, NOW, lane="interactive")
        items = [
            ledger.Billed(ids[0], Usage(100, 10), Decimal("0.00002"), Decimal("0.00002")),
            ledger.Billed(ids[1], Usage(200, 20, 50), Decimal("0.00004"), Decimal("0.00005")),
            ledger.Billed(ids[2], Usage(1, 1), None, None),
        ]
        assert ledger.record_results(s, items, NOW) == 3
    with factory() as s:
        billed = generation.current(s)
        sums = ledger.spend(s)
    assert before is not None and billed is not None and billed > before  # the metrics reread
    with factory() as s, s.begin():
        assert ledger.record_results(s, items, NOW) == 0  # a re-collect after a crash
    with factory() as s:
        assert ledger.spend(s) == sums  # billed once
    with factory() as s, s.begin():
        requests.transition_requests(s, ids[:1], RequestState.SUCCEEDED, NOW)
    with factory() as s:
        (group,) = ledger.spend(s)
        assert ledger.spend(s, since=NOW + timedelta(seconds=1)) == []
        first = requests.load(s, ids[:1])[0]
    assert (group.source, group.model, group.lane, group.requests) == (
        "spool",
        "gpt-4o-mini",
        Lane.INTERACTIVE,
        3,
    )
    assert (group.input_tokens, group.cached_input_tokens, group.output_tokens) == (301, 50, 31)
    assert group.cost_usd == Decimal("0.00006")
    assert group.interactive_equiv_usd == Decimal("0.00007")
    assert group.savings_usd == Decimal("0.00001")
    assert group.overspend_usd == 0
    assert group.unpriced == 1
    assert first.state is RequestState.SUCCEEDED


def test_the_generation_moves_with_committed_changes_and_nothing_else(
    factory: sessionmaker[Session],
) -> None:
    """What the metrics' cache hangs on (``store/generation.py``): every committed change to
    requests, batches or the ledger moves it; reads, bookkeeping, a change of no row and a
    rolled-back change do not."""

    def now_at() -> int:
        with factory() as s:
            found = generation.current(s)
        assert found is not None
        return found

    start = now_at()
    ids = ingest(factory, [f"gen{next(_KEYS)}", f"gen{next(_KEYS)}"])
    ingested = now_at()
    assert ingested > start
    with factory() as s, s.begin():
        requests.counts_by_state(s)
        ledger.spend(s)
        stages.record_success(s, "intake", NOW)
        assert requests.transition_requests(s, [10**9], RequestState.HELD, NOW) == 0
    assert now_at() == ingested
    with pytest.raises(RuntimeError), factory() as s, s.begin():
        requests.transition_requests(s, ids, RequestState.HELD, NOW)
        raise RuntimeError("rolled back")
    assert now_at() == ingested
    with factory() as s, s.begin():  # two changes, one commit: one step
        requests.transition_requests(s, ids[:1], RequestState.HELD, NOW)
        requests.transition_requests(s, ids[1:], RequestState.HELD, NOW)
    assert now_at() == ingested + 1


def test_billing_an_unknown_request_fails(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin(), pytest.raises(StoreError, match="not in the store"):
        ledger.record_result(s, 999_999, Usage(1, 1), Decimal(0), Decimal(0), NOW)


def test_retried_request_is_billed_per_attempt(factory: sessionmaker[Session]) -> None:
    (rid,) = ingest(factory, ["a"])
    with factory() as s, s.begin():
        requests.transition_request(s, rid, RequestState.INTERACTIVE, NOW, lane="interactive")
        assert ledger.record_result(s, rid, Usage(1, 1), Decimal(1), Decimal(1), NOW)
        requests.transition_request(s, rid, RequestState.FAILED, NOW, error_message="500")
        requests.transition_request(s, rid, RequestState.QUEUED, NOW)
        requests.transition_request(s, rid, RequestState.INTERACTIVE, NOW, lane="interactive")
        assert ledger.record_result(s, rid, Usage(1, 1), Decimal(1), Decimal(1), NOW)
        assert not ledger.record_result(s, rid, Usage(1, 1), Decimal(1), Decimal(1), NOW)
    with factory() as s:
        attempts = s.execute(select(LEDGER.c.attempt).order_by(LEDGER.c.attempt))
        assert attempts.scalars().all() == [1, 2]


def test_estimates_are_recorded(factory: sessionmaker[Session]) -> None:
    ids = ingest(factory, ["a", "b"])
    with factory() as s, s.begin():
        n = requests.record_estimates(
            s,
            [
                (ids[0], TokenEstimate(10, 20, "tiktoken:o200k_base")),
                (999, TokenEstimate(1, 1, "x")),
            ],
            NOW,
        )
        assert requests.record_estimate(s, ids[1], TokenEstimate(3, 4, "chars/4"), NOW)
    assert n == 1
    with factory() as s:
        loaded = requests.load(s, ids)
    assert [r.estimate for r in loaded] == [
        TokenEstimate(10, 20, "tiktoken:o200k_base"),
        TokenEstimate(3, 4, "chars/4"),
    ]


def test_stage_runs(factory: sessionmaker[Session]) -> None:
    later = NOW + timedelta(minutes=1)
    with factory() as s, s.begin():
        stages.record_success(s, "intake", NOW)
        stages.record_failure(s, "intake", later, "source failed")
        stages.record_success(s, "poll", later)
    with factory() as s:
        runs = stages.last_runs(s)
    assert runs["intake"] == stages.StageRun("intake", NOW, later, "source failed")
    assert runs["poll"].last_success_at == later


# --- engine ------------------------------------------------------------------------------


def test_sqlite_is_durable_and_strict(tmp_path: Path) -> None:
    url = default_sqlite_url(tmp_path / "deep" / "state")
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            pragmas = {
                name: c.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in (
                    "journal_mode",
                    "synchronous",
                    "foreign_keys",
                    "busy_timeout",
                    "cache_size",
                    "wal_autocheckpoint",
                )
            }
    finally:
        engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "foreign_keys": 1,
        "busy_timeout": 30_000,
        "cache_size": -2_000,  # SQLite's own: more cost memory the daemon has not got
        "wal_autocheckpoint": 10_000,
    }
    assert (tmp_path / "deep" / "state" / "planner.db").is_file()


def test_deferred_readers_do_not_wait_for_a_writer(sqlite_engine: Engine) -> None:
    factory = make_session_factory(sqlite_engine)
    readers = make_session_factory(deferred(sqlite_engine))
    ingest(factory, ["a"])
    with factory() as writer, writer.begin():
        requests.transition_requests(writer, [1], RequestState.HELD, NOW)
        with readers() as reader, reader.begin():
            # the writer's change is not committed yet; the reader sees the last commit
            assert requests.counts_by_state(reader)["queued"] == 1


def test_database_errors_become_store_errors(factory: sessionmaker[Session]) -> None:
    batch_id = _planned_batch(factory)
    ids = ingest(factory, ["b"])
    with pytest.raises(StoreError, match="database error"), factory() as s, s.begin():
        batches.create_batch_intent(
            s, batch_id, "gemini", "gemini-2.5-flash", Endpoint.GENERATE_CONTENT, ids, NOW
        )
    with factory() as s:
        assert requests.load(s, ids)[0].state is RequestState.QUEUED


def test_urls_are_redacted_and_checked() -> None:
    shown = redact_url("postgresql+psycopg://planner:s3cr3t-pw@db.example:5432/planner")
    assert "s3cr3t-pw" not in shown
    assert shown == "postgresql+psycopg://planner:***@db.example:5432/planner"
    with pytest.raises(StoreError, match="unsupported database") as info:
        make_engine("mysql://u:s3cr3t-pw@h/db")
    assert "s3cr3t-pw" not in str(info.value)
    with pytest.raises(StoreError, match="not an in-memory"):
        make_engine("sqlite://")
    assert make_engine("postgresql://u@h/db").dialect.driver == "psycopg"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://u:s3cr3t-pw@db:notaport/planner", "the port is not a number"),
        ("postgresql+psycopg://u:s3cr3t-pw@[::1/planner", "the port is not a number"),
        ("not a url s3cr3t-pw", "expected dialect+driver://user:password@host:port/database"),
    ],
)
def test_an_unparsable_url_says_why_without_the_password(url: str, why: str) -> None:
    with pytest.raises(StoreError) as info:
        check_url(url)
    assert str(info.value).startswith("invalid database URL: ")
    assert why in str(info.value)
    assert "s3cr3t-pw" not in str(info.value)
    assert "<invalid database URL>" not in str(info.value)  # once said twice, with no reason


def test_an_unreachable_database_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot migrate") as info:
        upgrade("postgresql+psycopg://planner:s3cr3t-pw@127.0.0.1:1/planner?connect_timeout=2")
    assert "s3cr3t-pw" not in str(info.value)


def test_queue_summary_for_the_flush_triggers(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        empty = requests.queue_summary(s)
    assert (empty.count, empty.tokens, empty.oldest_waiting, empty.deadlines) == (0, 0, None, ())
    undated = [
        replace(make_request(k), deadline=None, received_at=NOW - timedelta(hours=h))
        for k, h in (("u1", 3), ("u2", 7))
    ]
    other = replace(make_request("o1", source="nightly"), deadline=NOW + timedelta(hours=5))
    with factory() as s, s.begin():
        requests.ingest(s, [make_request("d1"), *undated, other], NOW)
    with factory() as s:
        summary = requests.queue_summary(s)
    assert summary.count == 4
    # per source, aware UTC on both backends
    assert summary.deadlines == (
        SourceDeadlines("nightly", NOW + timedelta(hours=5), None),
        SourceDeadlines("spool", NOW + timedelta(hours=24), NOW - timedelta(hours=7)),
    )
    assert summary.oldest_waiting == NOW
    # not estimated yet: a quarter of each body's length
    with factory() as s:
        bodies = [stored.request.body for stored in requests.queued_for_planning(s)]
    lengths = [len(json.dumps(b, separators=(",", ":"), ensure_ascii=False)) for b in bodies]
    assert summary.tokens == sum(n // 4 for n in lengths)


def test_sqlite_ingest_writes_the_rows_sqlalchemy_would(tmp_path: Path) -> None:
    """SQLite ingest binds its multi-row INSERT itself (``_insert_new_values``): every column
    of every row must be what SQLAlchemy's own insert of the same rows stores."""
    from sqlalchemy.dialects import sqlite

    from planner.core.model import Measured

    measured = Measured(120, 300, b"\x00\xff" * 8, "o200k_base", 42, "tiktoken/cookbook", 7, 0)
    given = [
        make_request("plain"),
        replace(make_request("no-deadline é 日本"), deadline=None, metadata={}),
        replace(make_request("measured"), measured=measured, max_output_tokens=None),
        replace(
            make_request("elsewhere"),
            received_at=datetime(2026, 11, 28, 10, 30, tzinfo=timezone(timedelta(hours=2))),
        ),
    ]
    tables = []
    for name, direct in (("ours", True), ("sqlalchemy", False)):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade(engine)
        with make_session_factory(engine)() as s, s.begin():
            if direct:
                requests.ingest(s, given, NOW)
            else:
                rows = [requests._row_for(r, NOW) for r in given]
                s.execute(sqlite.insert(REQUEST), rows)
        with engine.connect() as connection:  # raw values, as stored
            tables.append(connection.exec_driver_sql("SELECT * FROM request ORDER BY id").all())
        engine.dispose()
    ours, theirs = tables
    assert len(ours) == len(given)
    for mine, other in zip(ours, theirs, strict=True):
        columns = enumerate(zip(mine, other, strict=True))
        assert mine == other, [(i, a, b) for i, (a, b) in columns if a != b]

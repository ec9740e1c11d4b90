"""SQLite's query plans for the statements that change requests a chunk at a time.

Without statistics SQLite takes ``state IN (...)`` for a selective term and walked the
index on ``state`` through every request in those states to find a chunk of 1,000 ids,
so a state change cost time in proportion to the whole queue (a pass grew with its square:
18 ms against 0.5 ms a chunk at 200,000 requests). These tests read SQLite's own plan of each
statement a state change, a retention chunk and a plain id lookup run, and require the ids to be
looked up by the primary key. (PostgreSQL keeps statistics and plans these by them.)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from planner.core.model import Endpoint, Request
from planner.core.states import RequestState
from planner.store import requests, retention
from planner.store.engine import make_engine, make_session_factory, upgrade

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'planner.db'}")
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _request(key: str) -> Request:
    return Request(
        source="spool",
        key=key,
        model="gpt-4o-mini" if int(key) % 2 else "gpt-4o",
        endpoint=Endpoint.CHAT_COMPLETIONS,
        body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": key}]},
        received_at=NOW,
    )


def _plans_of(
    engine: Engine, factory: sessionmaker[Session], work: Any, marker: str = "request.id IN"
) -> list[str]:
    """SQLite's plan of every statement with ``marker`` in it that ``work(session)`` runs (by
    default those on ``request`` with ids)."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if marker in statement and not statement.startswith("EXPLAIN"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with factory() as session, session.begin():
            work(session)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    plans = []
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        for statement, parameters in seen:
            rows = raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
            plans.append(f"{statement.split()[0]}: {'; '.join(r[3] for r in rows)}")
    assert plans, "the work ran no statement on request ids"
    return plans


def _by_primary_key(plans: list[str]) -> None:
    for plan in plans:
        assert "INDEX ix_request_state" not in plan, plan
        assert "INTEGER PRIMARY KEY" in plan, plan


def test_a_state_change_looks_requests_up_by_id(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with factory() as s, s.begin():
        requests.ingest(s, [_request(str(i)) for i in range(200)], NOW)
    with factory() as s:
        ids = sorted(r.id for r in requests.queued_for_planning(s))
    moved: list[int] = []

    def work(s: Session) -> None:
        moved.append(requests.transition_requests(s, ids[:50], RequestState.REJECTED, NOW))

    _by_primary_key(_plans_of(engine, factory, work))  # the event INSERT ... SELECT and UPDATE
    assert moved == [50]


def test_a_retention_chunk_looks_its_requests_up_by_id(engine: Engine) -> None:
    factory = make_session_factory(engine)
    old = NOW - timedelta(days=40)
    with factory() as s, s.begin():
        requests.ingest(s, [_request(str(i)) for i in range(200)], old)
        ids = sorted(r.id for r in requests.queued_for_planning(s))
        requests.transition_requests(s, ids[:120], RequestState.REJECTED, old)
    purged: list[retention.Purged] = []

    def work(s: Session) -> None:
        purged.append(retention.compact_requests(s, NOW - timedelta(days=30), limit=100))

    _by_primary_key(_plans_of(engine, factory, work))
    assert purged[0].requests == 100 and purged[0].more
    # and the chunk is found without the state index: it read every terminal request, sorted
    (select,) = _plans_of(engine, factory, work, marker="SELECT request.id \nFROM request")
    assert "INDEX ix_request_state" not in select and "TEMP B-TREE" not in select, select


def test_a_planning_round_reads_each_state_in_id_order(engine: Engine) -> None:
    """A round of queued and held requests after an id reads each state from the (state, id)
    index where the last round stopped: no scan of the whole queue, no sort of it."""
    factory = make_session_factory(engine)
    with factory() as s, s.begin():
        requests.ingest(s, [_request(str(i)) for i in range(200)], NOW)
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("SELECT") and "FROM request" in statement:
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with factory() as s, s.begin():
            got = list(
                requests.queued_for_planning(
                    s, 20, after_id=50, states=(RequestState.QUEUED, RequestState.HELD)
                )
            )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert [r.id for r in got] == list(range(51, 71))
    assert len(statements) == 2  # one per state
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        for statement, parameters in statements:
            plan = "; ".join(
                r[3] for r in raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
            )
            assert "ix_request_state_id (state=? AND id>?)" in plan, plan
            assert "TEMP B-TREE" not in plan, plan

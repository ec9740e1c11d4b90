"""Budgets end to end: `run --once` against the sandbox, and reservations rebuilt from the store.

What counts against a budget is read from the rows (in-flight reservations, the ledger), never
from a counter in memory: a second planner on the same store — a restart, or another replica —
must see exactly what the first one reserved, and the billed money must stay within the cap.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from planner.config import load_config
from planner.core.budget import BudgetKey, Period, Scope
from planner.core.states import RequestState
from planner.pipeline.budgeting import open_book
from planner.pipeline.plan_stage import run_plan_stage
from planner.runtime.runner import run_once
from planner.runtime.store_commands import report, status
from planner.runtime.wiring import build_context, build_planner, open_store
from planner.store.tables import LEDGER, REQUEST
from tests.contract.store_backends import BACKENDS, backend_url

REQUESTS = 24
DAILY = Decimal("0.01")
POLICY = BudgetKey(Scope.POLICY, "default")
CONFIG = """
state_dir: state
store: {{url: "{url}"}}
providers:
  openai: {{kind: openai}}
sources:
  spool: {{kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, sink: out}}
sinks:
  out: {{kind: jsonl_dir, path: results}}
policies:
  default:
    batch_window: 24h
    default_deadline: 5d
    budget: {{daily_usd: "{daily}", timezone: UTC, at_cap: hold}}
"""


def _line(i: int) -> dict[str, Any]:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Summarise ticket {i} in one line."}],
        "max_tokens": 4000,  # upper bound 4000 output tokens: about 0.0012 USD by batch
    }
    return {"custom_id": f"t-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}


def _workspace(tmp_path: Path, url: str) -> Path:
    (tmp_path / "spool").mkdir()
    with (tmp_path / "spool" / "work.jsonl").open("w") as f:
        for i in range(REQUESTS):
            f.write(json.dumps(_line(i)) + "\n")
    os.utime(tmp_path / "spool" / "work.jsonl", (1_000_000_000, 1_000_000_000))  # settled
    (tmp_path / "planner.yaml").write_text(CONFIG.format(url=url, daily=DAILY))
    return tmp_path


def _states(session: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for (state,) in session.execute(select(REQUEST.c.state)):
        found[state] = found.get(state, 0) + 1
    return found


def _ledger_sum(session: Any, since: datetime) -> Decimal:
    rows = session.execute(select(LEDGER.c.cost_usd).where(LEDGER.c.recorded_at >= since))
    return sum((cost for (cost,) in rows), Decimal(0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_once_spends_within_the_day_and_holds_the_rest_until_the_next(
    tmp_path: Path, backend: str, sandbox_factory: Any
) -> None:
    sandbox = sandbox_factory()
    with backend_url(backend, tmp_path) as url:
        workspace = _workspace(tmp_path, url)
        cfg = load_config(workspace / "planner.yaml")
        day1 = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0)
        run_once(build_context(cfg, sandbox_url=sandbox.url), now=lambda: day1)
        with open_store(cfg)() as session:
            states = _states(session)
            spent = _ledger_sum(session, day1.replace(hour=0))
            reserved = [
                r
                for (r,) in session.execute(
                    select(REQUEST.c.reserved_usd).where(REQUEST.c.state == "succeeded")
                )
            ]
        # some went by batch and were billed; the budget held the rest
        assert 0 < states.get("succeeded", 0) < REQUESTS, states
        assert states["held"] == REQUESTS - states["succeeded"]
        assert sum(reserved) <= DAILY  # what was planned fit at its upper bound
        assert 0 < spent <= sum(reserved)  # billed no more than reserved
        shown = status(cfg)
        assert shown["requests"]["held"] == states["held"]
        decisions = {(d["rule"], d["state"]): d["requests"] for d in shown["decisions"]}
        assert decisions[("budget_exhausted", "held")] == states["held"]
        assert decisions[("deadline_allows_batch", "succeeded")] == states["succeeded"]
        [day_row] = [b for b in shown["budgets"] if b["period"] == "day"]
        # status runs on the wall clock: same UTC day as day1 unless the test straddles midnight
        if datetime.now(UTC).date() == day1.date():
            assert Decimal(day_row["spent_usd"]) == spent
            assert day_row["held_requests"] == states["held"]

        # later the same day: the reservations turned into (smaller) actual costs, so the
        # room left is limit - spent; what is planned now fits that room
        later = day1 + timedelta(hours=2)
        run_once(build_context(cfg, sandbox_url=sandbox.url), now=lambda: later)
        with open_store(cfg)() as session:
            assert _ledger_sum(session, day1.replace(hour=0)) <= DAILY
        # the next days: the held requests get their turn, none is billed twice
        for day in range(1, 10):
            moment = day1 + timedelta(days=day)
            run_once(build_context(cfg, sandbox_url=sandbox.url), now=lambda m=moment: m)
            with open_store(cfg)() as session:
                assert _ledger_sum(session, moment.replace(hour=0)) <= DAILY
                if _states(session) == {"succeeded": REQUESTS}:
                    break
        with open_store(cfg)() as session:
            assert _states(session) == {"succeeded": REQUESTS}
            assert len(session.execute(select(LEDGER.c.id)).all()) == REQUESTS
        money = report(cfg, None, moment)
        rules = {(d["rule"], d["state"]) for d in money["decisions"]}
        assert rules == {("deadline_allows_batch", "succeeded")}  # the rule kept after completion


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_restart_or_replica_rebuilds_the_reservations_from_the_store(
    tmp_path: Path, backend: str
) -> None:
    with backend_url(backend, tmp_path) as url:
        workspace = _workspace(tmp_path, url)
        cfg = load_config(workspace / "planner.yaml")
        ctx = build_context(cfg, sandbox_url="http://127.0.0.1:9")  # no provider is called
        from planner.pipeline.intake import ingest_all

        now = datetime(2026, 12, 6, 9, tzinfo=UTC)
        ingested = ingest_all(ctx.sources, ctx.session_factory, now)
        assert sum(ingested.inserted.values()) == REQUESTS, ingested
        first = run_plan_stage(ctx.planner, ctx.session_factory, now, chunk=5)  # 5 per round
        planned = first.lanes.get("batch", 0)
        assert 0 < planned < REQUESTS, first
        assert first.lanes["held"] == REQUESTS - planned, first
        # a second process on the same store (a restart, or a replica) sees the same money
        other = build_planner(cfg)
        with open_store(cfg)() as session:
            book = open_book(session, other.budget_rules, other.budgets_of, now)
            assert book is not None
            rows = session.execute(
                select(REQUEST.c.reserved_usd).where(REQUEST.c.state == RequestState.PLANNED.value)
            ).all()
        window = book.windows[(POLICY, Period.DAY)]
        assert window.reserved == sum(r for (r,) in rows) <= DAILY
        assert window.spent == 0
        # it plans nothing more: the room left is smaller than any request's upper bound
        again = run_plan_stage(other, open_store(cfg), now + timedelta(minutes=5), chunk=100)
        assert again.lanes == {"held": REQUESTS - planned}
        # the next day the in-flight work still counts (it is not billed yet)
        tomorrow = now + timedelta(days=1)
        with open_store(cfg)() as session:
            book = open_book(session, other.budget_rules, other.budgets_of, tomorrow)
        assert book is not None and book.windows[(POLICY, Period.DAY)].reserved == window.reserved

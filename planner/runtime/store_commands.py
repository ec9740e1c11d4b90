"""The CLI's commands on the store itself: ``status`` and ``report`` (read the queue, the
ledger, the decisions by rule and the budgets, exact decimals as strings) and ``requeue``
(dead letters back to the queue)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from planner.config.schema import PlannerConfig
from planner.pipeline.decisions import (
    accuracy_rows,
    budgets_now,
    decision_rows,
    turnaround_rows,
)
from planner.runtime import clock
from planner.runtime.wiring import build_planner, open_store
from planner.store import batches as store_batches
from planner.store import ledger as store_ledger
from planner.store import requests as store_requests
from planner.store.ledger import Spend

_log = logging.getLogger(__name__)


def _spend_rows(spend: list[Spend]) -> list[dict[str, Any]]:
    return [
        {
            "source": s.source,
            "provider": s.provider,
            "model": s.model,
            "lane": s.lane.value,
            "requests": s.requests,
            "input_tokens": s.input_tokens,
            "cached_input_tokens": s.cached_input_tokens,
            "output_tokens": s.output_tokens,
            "cost_usd": format(s.cost_usd, "f"),
            "interactive_equivalent_usd": format(s.interactive_equiv_usd, "f"),
            "savings_usd": format(s.savings_usd, "f"),
            "unpriced": s.unpriced,
        }
        for s in spend
    ]


def status(cfg: PlannerConfig) -> dict[str, Any]:
    """``planner status``: requests and batches by state, and the money so far."""
    session_factory = open_store(cfg)
    with session_factory() as session:
        return {
            "requests": store_requests.counts_by_state(session),
            "batches": store_batches.counts_by_state(session),
            "spend": _spend_rows(store_ledger.spend(session)),
            "decisions": decision_rows(session),
            "budgets": budgets_now(session, build_planner(cfg), clock.utc_now()),
        }


def requeue(
    cfg: PlannerConfig, error_code: str, source: str | None, *, dry_run: bool, now: datetime
) -> dict[str, Any]:
    """``planner requeue``: dead-lettered requests with this error go back to the queue."""
    with open_store(cfg)() as session, session.begin():
        found = store_requests.requeue_dead(
            session, now, error_code=error_code, source=source, dry_run=dry_run
        )
    if found and not dry_run:
        _log.warning(
            "%d dead-lettered requests (%s) requeued by the operator",
            len(found),
            error_code,
            extra={"event": "requeued", "reason": error_code, "count": len(found)},
        )
    return {
        "requeued": 0 if dry_run else len(found),
        "dry_run": dry_run,
        "requests": [{"source": r.source, "key": r.key, "error": r.error_message} for r in found],
    }


def report(cfg: PlannerConfig, since: timedelta | None, now: datetime) -> dict[str, Any]:
    """``planner report``: what was billed (in the window ``since`` before ``now``, or ever),
    its interactive equivalent and the saving, by source, provider, model and lane, with
    totals. Read from the store's ledger, exact decimals, as strings."""
    cutoff = None if since is None else now - since
    with open_store(cfg)() as session:
        spend = store_ledger.spend(session, cutoff)
        decisions = decision_rows(session, cutoff)
        turnaround = turnaround_rows(session)
        accuracy = accuracy_rows(session, cutoff)
        budgets = budgets_now(session, build_planner(cfg), now)
    totals = {
        "requests": sum(s.requests for s in spend),
        "input_tokens": sum(s.input_tokens for s in spend),
        "cached_input_tokens": sum(s.cached_input_tokens for s in spend),
        "output_tokens": sum(s.output_tokens for s in spend),
        "cost_usd": format(sum((s.cost_usd for s in spend), Decimal(0)), "f"),
        "interactive_equivalent_usd": format(
            sum((s.interactive_equiv_usd for s in spend), Decimal(0)), "f"
        ),
        "savings_usd": format(sum((s.savings_usd for s in spend), Decimal(0)), "f"),
        "unpriced": sum(s.unpriced for s in spend),
    }
    return {
        "since": None if cutoff is None else cutoff.isoformat(),
        "until": now.isoformat(),
        "rows": _spend_rows(spend),
        "totals": totals,
        "decisions": decisions,
        "budgets": budgets,
        "turnaround": turnaround,
        "accuracy": accuracy,
    }

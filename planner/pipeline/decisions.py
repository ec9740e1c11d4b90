"""What ``status`` and ``report`` show of the cost policy: decisions by rule, budgets now.

Both are read from the store (the requests' kept ``decision`` and the budgets' sums), so every
figure equals what the planner itself counts with (``plan.open_book``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from planner.core.calibrate import MIN_SAMPLES, NO_CALIBRATION, error_ratio
from planner.core.turnaround import MIN_BATCHES, percentile
from planner.pipeline.budgeting import open_book
from planner.pipeline.plan import Planner
from planner.pipeline.preview import budget_rows
from planner.store import batches as store_batches
from planner.store import budgets as store_budgets
from planner.store import calibration as store_calibration

_PLAN_ONLY = ("planned_usd", "held_requests", "rejected_requests", "held_usd")


def decision_rows(session: Session, since: datetime | None = None) -> list[dict[str, Any]]:
    """``[{"rule", "state", "requests"}]``: each rule's requests by their state now."""
    found = store_budgets.decisions_by_rule(session, since)
    return [
        {"rule": rule, "state": state, "requests": n} for (rule, state), n in sorted(found.items())
    ]


def budget_gauges(session: Session, planner: Planner, now: datetime) -> dict[str, dict[str, Any]]:
    """The budget windows at ``now`` for the store-derived gauges (``metrics.BUDGET_GAUGES``):
    ``{"budget_limit": {"policy:default/day": usd}, "budget_spent": ..., ...}``; empty maps
    when no budget is configured."""
    book = open_book(session, planner.budget_rules, planner.budgets_of, now)
    found: dict[str, dict[str, Any]] = {
        f"budget_{k}": {} for k in ("limit", "spent", "reserved", "remaining")
    }
    for (key, period), window in book.windows.items() if book is not None else ():
        name = f"{key}/{period.value}"
        found["budget_limit"][name] = window.limit
        found["budget_spent"][name] = window.spent
        found["budget_reserved"][name] = window.reserved
        found["budget_remaining"][name] = window.remaining
    return found


def budgets_now(session: Session, planner: Planner, now: datetime) -> list[dict[str, Any]]:
    """Each configured budget window at ``now``: limit, spent, reserved, remaining, plus the
    requests it holds (state ``held`` under that budget's sources)."""
    rows = budget_rows(open_book(session, planner.budget_rules, planner.budgets_of, now))
    held = store_budgets.held_by_source(session)
    for row in rows:
        for name in _PLAN_ONLY:
            row.pop(name, None)
        row["held_requests"] = sum(
            n for source, n in held.items() if row["budget"] in map(str, planner.budgets_of(source))
        )
    return rows


def turnaround_rows(session: Session) -> list[dict[str, Any]]:
    """Per (provider, model) with finished batches: how many, p50 and p95 in seconds, and
    whether the learned p95 is in force (``MIN_BATCHES`` or more) or the policy's window."""
    rows = []
    for (provider, model), seen in sorted(store_batches.turnarounds(session).items()):
        rows.append(
            {
                "provider": provider,
                "model": model,
                "batches": len(seen),
                "p50_seconds": percentile(seen, 50).total_seconds(),
                "p95_seconds": percentile(seen, 95).total_seconds(),
                "learned": len(seen) >= MIN_BATCHES,
                "learned_after": MIN_BATCHES,
            }
        )
    return rows


def _ratio(estimated: int, billed: int) -> str | None:
    found = error_ratio(estimated, billed)
    return None if found is None else f"{float(found):.4f}"


def accuracy_rows(session: Session, since: datetime | None = None) -> list[dict[str, Any]]:
    """Per (provider, model), billed requests completed at or after ``since``: estimated
    against billed input and output tokens, the error as ``estimated / billed - 1`` (the raw
    estimator's and the calibrated one's), and the input correction now in force."""
    calibrations = store_calibration.input_calibrations(session)
    rows = []
    for a in store_calibration.accuracy(session, since):
        calibration = calibrations.get(a.model, NO_CALIBRATION)
        rows.append(
            {
                "provider": a.provider,
                "model": a.model,
                "requests": a.requests,
                "estimated_input_tokens": a.estimated_input,
                "billed_input_tokens": a.billed_input,
                "input_error": _ratio(a.estimated_input, a.billed_input),
                "raw_input_error": _ratio(a.raw_input, a.raw_billed_input),
                "estimated_output_tokens": a.estimated_output,
                "billed_output_tokens": a.billed_output,
                "output_error": _ratio(a.estimated_output, a.billed_output),
                "input_factor": f"{float(calibration.factor):.4f}",
                "calibrated": calibration.active,
                "calibrated_after": MIN_SAMPLES,
            }
        )
    return rows

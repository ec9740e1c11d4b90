"""Budgets in a planning pass: the book read from the store, and each decision checked
against it (``core/budget.py`` does the arithmetic, ``store/budgets.py`` the sums).

The store is imported where the book is opened, not with this module: the dry run checks its
decisions here on a machine that may have no store, and SQLAlchemy is a third of its start-up."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from planner.core.budget import BudgetBook, BudgetKey, BudgetRules, Period, window_start
from planner.core.cost import LaneCosts
from planner.core.policy import BudgetRoom, Decision, lane_cost, within_budget

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def budgeted(
    decision: Decision, costs: LaneCosts, book: BudgetBook, keys: tuple[BudgetKey, ...]
) -> Decision:
    """``decision`` checked against the budgets ``keys`` in ``book``, and reserved there."""
    lane = decision.lane
    room = None if lane is None else book.room(keys)
    if lane is None or room is None:
        return decision
    cost = lane_cost(costs, lane)
    if cost is None or cost <= room:  # fits: ``within_budget`` keeps it, reserved at once
        book.reserve(keys, cost or Decimal(0))
        return decision
    final = within_budget(decision, costs, BudgetRoom(room, book.at_cap(keys)))
    if final.lane is not None:
        book.reserve(keys, lane_cost(costs, final.lane) or Decimal(0))
        return final
    binding = book.binding(keys)
    if binding is not None:
        book.hold(binding, lane_cost(costs, lane) or Decimal(0), rejected=not final.held)
    return final


def window_starts(
    rules: Mapping[BudgetKey, BudgetRules], now: datetime
) -> dict[tuple[BudgetKey, Period], datetime]:
    """When each configured budget's current window began at ``now``: a book opened at two
    moments with the same starts, on an unchanged store, is the same book."""
    return {
        (key, period): window_start(period, now, rule.tz)
        for key, rule in rules.items()
        for period in rule.limits()
    }


def open_book(
    session: Session,
    rules: Mapping[BudgetKey, BudgetRules],
    budgets_of: Callable[[str], tuple[BudgetKey, ...]],
    now: datetime,
) -> BudgetBook | None:
    """Every configured budget at ``now``, from the store: what its windows spent (the ledger)
    and what is in flight (the requests' reservations). ``None`` when no budget is set."""
    if not rules:
        return None
    from planner.store import budgets as store_budgets

    starts = window_starts(rules, now)
    by_start = {
        start: store_budgets.spent_by_source(session, start) for start in set(starts.values())
    }
    spent: dict[tuple[BudgetKey, Period], Decimal] = {}
    for (key, period), start in starts.items():
        rows = by_start[start].items()
        spent[(key, period)] = sum(
            (usd for source, usd in rows if key in budgets_of(source)), Decimal(0)
        )
    reserved: dict[BudgetKey, Decimal] = {}
    for source, usd in store_budgets.reserved_by_source(session).items():
        for key in budgets_of(source):
            reserved[key] = reserved.get(key, Decimal(0)) + usd
    return BudgetBook.start(rules, spent, reserved)

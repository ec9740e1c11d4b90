"""Budgets: how much a policy or a source may spend per day and per month, as pure arithmetic.

A budget has a daily and/or a monthly limit, a time zone where its day and month begin, and what
happens at the cap (``at_cap``). Money is counted in two parts, both derived from the store:

- ``spent``: what the ledger billed inside the current window (the day or month of ``now`` in
  the budget's time zone);
- ``reserved``: work in flight (planned, submitted, sent interactively), each request counted at
  its upper bound — the input estimate plus the maximum output, at the price of its lane. When
  the request is collected its reservation ends and its actual cost becomes ``spent``
  (:func:`settle`). In-flight work always counts against the current window.

``remaining = limit - spent - reserved``; a request fits while its upper bound is at most the
remaining money of every window of every budget it falls under (its policy's and its source's).

Nothing here reads the clock or a time-zone database: ``now`` and the ``tzinfo`` are parameters
(the config resolves the zone name once, at load).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from enum import StrEnum


class AtCap(StrEnum):
    """What the policy does with a request that does not fit the budget."""

    HOLD = "hold"  # keep it (state held) until the budget has room again
    REJECT = "reject"  # refuse it, with the reason
    BATCH_ONLY = "batch_only"  # send it by batch if that fits (deadline or not), else hold


class Period(StrEnum):
    DAY = "day"
    MONTH = "month"


class Scope(StrEnum):
    """What a budget belongs to (config ``policies.<name>.budget`` or ``sources.<name>.budget``)."""

    POLICY = "policy"
    SOURCE = "source"


@dataclass(frozen=True, slots=True, order=True)
class BudgetKey:
    scope: Scope
    name: str

    def __str__(self) -> str:
        return f"{self.scope.value}:{self.name}"


@dataclass(frozen=True, slots=True)
class BudgetRules:
    """One configured budget; at least one of the limits is set."""

    daily_usd: Decimal | None
    monthly_usd: Decimal | None
    tz: tzinfo = UTC
    at_cap: AtCap = AtCap.HOLD

    def limits(self) -> dict[Period, Decimal]:
        found = {Period.DAY: self.daily_usd, Period.MONTH: self.monthly_usd}
        return {p: v for p, v in found.items() if v is not None}


def window_start(period: Period, now: datetime, tz: tzinfo) -> datetime:
    """The UTC instant the day or month containing ``now`` began, in the zone ``tz``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(tz)
    day = 1 if period is Period.MONTH else local.day
    return datetime(local.year, local.month, day, tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """One period of one budget at one moment: its limit and what already counts against it."""

    limit: Decimal
    spent: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)

    @property
    def remaining(self) -> Decimal:
        """What is left; never below zero (actual costs above their reservation can overrun)."""
        return max(Decimal(0), self.limit - self.spent - self.reserved)

    @property
    def used(self) -> Decimal:
        return self.spent + self.reserved


def reserve(window: Window, amount: Decimal) -> Window:
    """``window`` with ``amount`` more in flight."""
    if amount < 0:
        raise ValueError("a reservation cannot be negative")
    return replace(window, reserved=window.reserved + amount)


def settle(window: Window, reserved: Decimal, actual: Decimal) -> Window:
    """``window`` once work reserved at ``reserved`` was billed ``actual``."""
    left = max(Decimal(0), window.reserved - reserved)
    return replace(window, reserved=left, spent=window.spent + actual)


def fraction_used(window: Window) -> Decimal:
    """``(spent + reserved) / limit`` (1 when the limit is zero)."""
    return Decimal(1) if window.limit == 0 else window.used / window.limit


@dataclass(slots=True)
class HeldBack:
    """What a budget kept from being planned in one pass."""

    requests: int = 0  # held (state held) or, with at_cap reject, rejected
    usd: Decimal = Decimal(0)  # their upper-bound cost in the lane they would have taken
    rejected: int = 0


@dataclass(slots=True)
class BudgetBook:
    """Every configured budget's windows during one planning pass, with its reservations.

    Built from the store's sums (``spent`` per window, ``reserved`` in flight); the pass then
    :meth:`reserve` s each request it plans, so the next request sees the money already taken.
    """

    rules: Mapping[BudgetKey, BudgetRules]
    windows: dict[tuple[BudgetKey, Period], Window] = field(default_factory=dict)
    planned: dict[BudgetKey, Decimal] = field(default_factory=dict)
    held: dict[BudgetKey, HeldBack] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        rules: Mapping[BudgetKey, BudgetRules],
        spent: Mapping[tuple[BudgetKey, Period], Decimal],
        reserved: Mapping[BudgetKey, Decimal],
    ) -> BudgetBook:
        """The book at the start of a pass: each window's limit, what it spent and reserved."""
        book = cls(rules)
        for key, rule in rules.items():
            for period, limit in rule.limits().items():
                book.windows[(key, period)] = Window(
                    limit, spent.get((key, period), Decimal(0)), reserved.get(key, Decimal(0))
                )
        return book

    def _windows(self, keys: Iterable[BudgetKey]) -> list[tuple[BudgetKey, Window]]:
        return [(k, w) for (k, _), w in self.windows.items() if k in set(keys)]

    def room(self, keys: Iterable[BudgetKey]) -> Decimal | None:
        """The money left under every budget in ``keys`` (``None``: none of them is set)."""
        found = [w.remaining for k, w in self._windows(keys)]
        return min(found) if found else None

    def binding(self, keys: Iterable[BudgetKey]) -> BudgetKey | None:
        """The budget with the least room among ``keys`` (the one a hold is charged to)."""
        found = self._windows(keys)
        return min(found, key=lambda kw: (kw[1].remaining, kw[0]))[0] if found else None

    def at_cap(self, keys: Iterable[BudgetKey]) -> AtCap:
        """The strictest ``at_cap`` among the budgets: reject, then hold, then batch_only."""
        order = (AtCap.REJECT, AtCap.HOLD, AtCap.BATCH_ONLY)
        found = {self.rules[k].at_cap for k in keys if k in self.rules}
        return next((a for a in order if a in found), AtCap.HOLD)

    def reserve(self, keys: Iterable[BudgetKey], amount: Decimal) -> None:
        """Take ``amount`` from every window of every budget in ``keys``."""
        chosen = [k for k in set(keys) if k in self.rules]
        for slot, window in list(self.windows.items()):
            if slot[0] in chosen:
                self.windows[slot] = reserve(window, amount)
        for key in chosen:
            self.planned[key] = self.planned.get(key, Decimal(0)) + amount

    def hold(self, key: BudgetKey, amount: Decimal, *, rejected: bool = False) -> None:
        """Count one request the budget ``key`` kept back, at its upper-bound cost."""
        held = self.held.setdefault(key, HeldBack())
        held.requests += 1
        held.usd += amount
        held.rejected += int(rejected)

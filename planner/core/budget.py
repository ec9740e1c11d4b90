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
from typing import NamedTuple


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
        left = self.limit - self.spent - self.reserved
        return left if left > 0 else _ZERO

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
    The windows and strictest ``at_cap`` of each set of budgets a request falls under are
    worked out once per set (a pass asks for every request).
    """

    rules: Mapping[BudgetKey, BudgetRules]
    windows: dict[tuple[BudgetKey, Period], Window] = field(default_factory=dict)
    planned: dict[BudgetKey, Decimal] = field(default_factory=dict)
    held: dict[BudgetKey, HeldBack] = field(default_factory=dict)
    _slots: dict[tuple[BudgetKey, ...], _Slots] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

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

    def _of(self, keys: Iterable[BudgetKey]) -> _Slots:
        """The windows of ``keys`` (remembered per set of keys; the windows never change)."""
        given = tuple(keys)
        found = self._slots.get(given)
        if found is None:
            unique = set(given)
            slots = tuple(slot for slot in self.windows if slot[0] in unique)
            chosen = tuple(k for k in unique if k in self.rules)
            caps = {self.rules[k].at_cap for k in chosen}
            at_cap = next((a for a in _STRICTEST_FIRST if a in caps), AtCap.HOLD)
            found = self._slots[given] = _Slots(slots, chosen, at_cap)
        return found

    def _windows(self, keys: Iterable[BudgetKey]) -> list[tuple[BudgetKey, Window]]:
        return [(slot[0], self.windows[slot]) for slot in self._of(keys).windows]

    def room(self, keys: Iterable[BudgetKey]) -> Decimal | None:
        """The money left under every budget in ``keys`` (``None``: none of them is set)."""
        slots = self._of(keys).windows
        if not slots:
            return None
        windows = self.windows
        found = windows[slots[0]].remaining
        for slot in slots[1:]:
            left = windows[slot].remaining
            if left < found:
                found = left
        return found

    def binding(self, keys: Iterable[BudgetKey]) -> BudgetKey | None:
        """The budget with the least room among ``keys`` (the one a hold is charged to)."""
        found = self._windows(keys)
        return min(found, key=lambda kw: (kw[1].remaining, kw[0]))[0] if found else None

    def at_cap(self, keys: Iterable[BudgetKey]) -> AtCap:
        """The strictest ``at_cap`` among the budgets: reject, then hold, then batch_only."""
        return self._of(keys).at_cap

    def reserve(self, keys: Iterable[BudgetKey], amount: Decimal) -> None:
        """Take ``amount`` from every window of every budget in ``keys``."""
        of = self._of(keys)
        if of.windows and amount < 0:
            raise ValueError("a reservation cannot be negative")
        windows = self.windows
        for slot in of.windows:
            w = windows[slot]
            windows[slot] = Window(w.limit, w.spent, w.reserved + amount)
        planned = self.planned
        for key in of.budgets:
            planned[key] = planned.get(key, _ZERO) + amount

    def hold(self, key: BudgetKey, amount: Decimal, *, rejected: bool = False) -> None:
        """Count one request the budget ``key`` kept back, at its upper-bound cost."""
        held = self.held.setdefault(key, HeldBack())
        held.requests += 1
        held.usd += amount
        held.rejected += int(rejected)


class _Slots(NamedTuple):
    """What a set of budget keys comes to: its windows, its configured budgets, its at_cap."""

    windows: tuple[tuple[BudgetKey, Period], ...]
    budgets: tuple[BudgetKey, ...]
    at_cap: AtCap


_STRICTEST_FIRST = (AtCap.REJECT, AtCap.HOLD, AtCap.BATCH_ONLY)
_ZERO = Decimal(0)

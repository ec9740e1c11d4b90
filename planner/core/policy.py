"""The cost policy: which lane one request takes, and the rule that decided it.

Order of the rules (first match wins):

1. no interactive price for the model -> rejected, ``unpriced`` (we never guess a price);
2. batch when it is priced, the deadline leaves at least ``batch_window`` and the saving meets
   ``min_savings_usd`` (and ``min_savings_ratio`` of the interactive cost, if set);
3. else flex when allowed, priced, cheaper than interactive and the deadline leaves at least
   ``flex_latency``;
4. else interactive, with the reason batch was not chosen.

The deadline is the request's own, else ``received_at + default_deadline``, else none (a request
without a deadline can always wait for a batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from planner.core.cost import LaneCosts
from planner.core.model import Lane, Request, TokenEstimate


class Reason(StrEnum):
    """Every rule id a decision can carry (also the ``reasons`` keys of ``planner plan``)."""

    DEADLINE_ALLOWS_BATCH = "deadline_allows_batch"
    DEADLINE_TOO_CLOSE = "deadline_too_close"
    SAVINGS_BELOW_MINIMUM = "savings_below_minimum"
    BATCH_UNPRICED = "batch_unpriced"
    UNPRICED = "unpriced"
    FLEX_CHEAPER_THAN_INTERACTIVE = "flex_cheaper_than_interactive"
    NO_PROVIDER = "no_provider"  # set by the planner: no configured provider serves the model


@dataclass(frozen=True, slots=True)
class PolicyRules:
    """One policy's knobs (config ``policies:``)."""

    batch_window: timedelta = timedelta(hours=24)
    min_savings_usd: Decimal = Decimal(0)
    min_savings_ratio: Decimal | None = None
    default_deadline: timedelta | None = None
    allow_flex: bool = False
    flex_latency: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Decision:
    """The lane (``None`` = rejected), the rule id and a human sentence for logs and reports."""

    lane: Lane | None
    reason: Reason
    detail: str


def deadline_of(request: Request, rules: PolicyRules) -> datetime | None:
    """The request's deadline, else the policy default counted from ingestion, else none."""
    if request.deadline is not None:
        return request.deadline
    if rules.default_deadline is not None:
        return request.received_at + rules.default_deadline
    return None


def _savings_enough(savings: Decimal, interactive: Decimal, rules: PolicyRules) -> bool:
    if savings < rules.min_savings_usd:
        return False
    ratio = rules.min_savings_ratio
    return ratio is None or savings >= ratio * interactive


@dataclass(frozen=True, slots=True)
class _Case:
    """What the rules look at, gathered once: the priced request at ``now``."""

    costs: LaneCosts
    interactive: Decimal
    rules: PolicyRules
    deadline: datetime | None
    now: datetime

    def room_for(self, needed: timedelta) -> bool:
        return self.deadline is None or self.deadline - self.now >= needed


def _batch(case: _Case) -> Reason:
    """``DEADLINE_ALLOWS_BATCH`` if batch fits, else the reason it does not."""
    if case.costs.savings is None:
        return Reason.BATCH_UNPRICED
    if not case.room_for(case.rules.batch_window):
        return Reason.DEADLINE_TOO_CLOSE
    if not _savings_enough(case.costs.savings, case.interactive, case.rules):
        return Reason.SAVINGS_BELOW_MINIMUM
    return Reason.DEADLINE_ALLOWS_BATCH


def _flex_fits(case: _Case) -> bool:
    flex = case.costs.flex
    if not case.rules.allow_flex or flex is None or flex >= case.interactive:
        return False
    return case.room_for(case.rules.flex_latency)


def _deadline_text(deadline: datetime | None) -> str:
    return "no deadline" if deadline is None else f"deadline {deadline.isoformat()}"


def decide(
    request: Request,
    estimate: TokenEstimate,
    costs: LaneCosts,
    rules: PolicyRules,
    now: datetime,
) -> Decision:
    """Pick the lane for ``request`` at ``now`` (see the module docstring for the rules)."""
    if costs.interactive is None:
        detail = f"no price for model {request.model} ({estimate.input_tokens} input tokens)"
        return Decision(None, Reason.UNPRICED, detail)
    deadline = deadline_of(request, rules)
    case = _Case(costs, costs.interactive, rules, deadline, now)
    why = _batch(case)
    if why is Reason.DEADLINE_ALLOWS_BATCH:
        detail = f"{_deadline_text(deadline)}; saves {costs.savings} USD"
        return Decision(Lane.BATCH, why, detail)
    if _flex_fits(case):
        detail = f"batch not chosen ({why.value}); flex {costs.flex} < {costs.interactive} USD"
        return Decision(Lane.FLEX, Reason.FLEX_CHEAPER_THAN_INTERACTIVE, detail)
    return Decision(Lane.INTERACTIVE, why, f"{_deadline_text(deadline)}; savings {costs.savings}")

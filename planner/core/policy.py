"""The cost policy: which lane one request takes, and the rule that decided it.

Order of the rules (first match wins):

1. no interactive price for the model -> rejected, ``unpriced`` (we never guess a price);
2. batch when it is priced, the deadline leaves at least ``batch_window`` (the turnaround's
   p95: configured, or learned in ``core/turnaround.py``) plus ``retry_time`` (one way out if
   the batch is late), and the saving meets ``min_savings_usd`` (and ``min_savings_ratio`` of
   the interactive cost, if set) — unless the request already escaped a batch once
   (``batch_escaped``): it is never batched again;
3. else flex when allowed, priced, cheaper than interactive and the deadline leaves at least
   ``flex_latency``;
4. else interactive, with the reason batch was not chosen;
5. then the budget (``core/budget.py``), when one applies: the chosen lane's upper-bound cost
   (input estimate plus the maximum output) must fit the money left. If it does not, ``at_cap``
   decides: ``hold`` keeps the request (state ``held``) until the budget has room,
   ``reject`` refuses it, ``batch_only`` sends it by batch when the batch cost fits (even if
   its deadline is too close for a batch: the cap weighs more) and holds it otherwise. Batch is
   the cheapest lane, so a request that does not fit by batch fits no other lane either.

The deadline is the request's own, else ``received_at + default_deadline``, else none (a request
without a deadline can always wait for a batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from planner.core.budget import AtCap
from planner.core.cost import FUSD_PER_USD, LaneCosts, to_usd, usd_text
from planner.core.model import Lane, Request, TokenEstimate


class Reason(StrEnum):
    """Every rule id a decision can carry (also the ``reasons`` keys of ``planner plan``)."""

    DEADLINE_ALLOWS_BATCH = "deadline_allows_batch"
    DEADLINE_TOO_CLOSE = "deadline_too_close"
    SAVINGS_BELOW_MINIMUM = "savings_below_minimum"
    BATCH_UNPRICED = "batch_unpriced"
    UNPRICED = "unpriced"
    FLEX_CHEAPER_THAN_INTERACTIVE = "flex_cheaper_than_interactive"
    BATCH_ESCAPED = "batch_escaped"  # its batch was cancelled for its deadline: never again
    NO_PROVIDER = "no_provider"  # set by the planner: no configured provider serves the model
    BUDGET_EXHAUSTED = "budget_exhausted"  # held or rejected: the budget has no room for it
    BUDGET_BATCH_ONLY = "budget_batch_only"  # batch instead of a dearer lane the budget refused


@dataclass(frozen=True, slots=True)
class PolicyRules:
    """One policy's knobs (config ``policies:``)."""

    batch_window: timedelta = timedelta(hours=24)
    min_savings_usd: Decimal = Decimal(0)
    min_savings_ratio: Decimal | None = None
    default_deadline: timedelta | None = None
    allow_flex: bool = False
    flex_latency: timedelta = timedelta(minutes=15)
    retry_time: timedelta = timedelta(0)  # the way out of a late batch, on top of the window
    # derived once: the minimum saving in whole FUSD (a saving is an integer, so ``savings <
    # min_savings_usd`` is ``savings_fusd < ceil(min × 10¹⁵)``) and the ratio as a fraction
    min_savings_fusd: int = field(init=False, repr=False, compare=False)
    savings_ratio: tuple[int, int] | None = field(init=False, repr=False, compare=False)
    batch_needed: timedelta = field(init=False, repr=False, compare=False)
    """The deadline slack a batch needs: the window plus one retry."""

    def __post_init__(self) -> None:
        numerator, denominator = self.min_savings_usd.as_integer_ratio()
        ceiling = -(-numerator * FUSD_PER_USD // denominator)
        object.__setattr__(self, "min_savings_fusd", ceiling)
        ratio = self.min_savings_ratio
        object.__setattr__(
            self, "savings_ratio", None if ratio is None else ratio.as_integer_ratio()
        )
        object.__setattr__(self, "batch_needed", self.batch_window + self.retry_time)


class Sentence(NamedTuple):
    """What rules 1-4 saw, for a decision's human sentence: written only when it is read (a
    planning pass decides every request, and most sentences are never shown)."""

    lane: Lane
    why: Reason  # the reason batch was chosen, or why it was not
    deadline: datetime | None
    savings: int | None  # FUSD
    flex: int = 0  # FUSD, for a flex decision
    interactive: int = 0

    def __str__(self) -> str:
        if self.lane is Lane.FLEX:
            flex, interactive = usd_text(self.flex), usd_text(self.interactive)
            return f"batch not chosen ({self.why.value}); flex {flex} < {interactive} USD"
        deadline = (
            "no deadline" if self.deadline is None else f"deadline {self.deadline.isoformat()}"
        )
        savings = "None" if self.savings is None else usd_text(self.savings)
        if self.lane is Lane.BATCH:
            return f"{deadline}; saves {savings} USD"
        return f"{deadline}; savings {savings}"


class Decision(NamedTuple):
    """The lane (``None`` = rejected, or held when ``held``), the rule id and a human sentence
    for logs and reports (``detail``; ``text`` holds it, or what it is written from)."""

    lane: Lane | None
    reason: Reason
    text: str | Sentence
    held: bool = False

    @property
    def detail(self) -> str:
        return str(self.text)

    @property
    def outcome(self) -> str:
        """``batch`` / ``interactive`` / ``flex`` / ``held`` / ``rejected``."""
        if self.lane is not None:
            return self.lane.value
        return HELD if self.held else REJECTED


HELD = "held"
REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class BudgetRoom:
    """The money left under every budget the request falls under, and what to do at the cap."""

    remaining: Decimal
    at_cap: AtCap = AtCap.HOLD


def lane_cost(costs: LaneCosts, lane: Lane) -> Decimal | None:
    """The request's (upper-bound) cost in ``lane``, in USD."""
    fusd = costs.lane_fusd(lane)
    return None if fusd is None else to_usd(fusd)


def deadline_of(request: Request, rules: PolicyRules) -> datetime | None:
    """The request's deadline, else the policy default counted from ingestion, else none."""
    if request.deadline is not None:
        return request.deadline
    if rules.default_deadline is not None:
        return request.received_at + rules.default_deadline
    return None


def _savings_enough(savings: int, interactive: int, rules: PolicyRules) -> bool:
    """In FUSD: ``savings >= min_savings_usd`` and ``savings >= ratio × interactive``, exact."""
    if savings < rules.min_savings_fusd:
        return False
    ratio = rules.savings_ratio
    return ratio is None or savings * ratio[1] >= ratio[0] * interactive


def _batch(
    savings: int | None, interactive: int, rules: PolicyRules, slack: timedelta | None
) -> Reason:
    """``DEADLINE_ALLOWS_BATCH`` if batch fits, else the reason it does not (``slack``: the
    time left to the deadline, ``None`` without one)."""
    if savings is None:
        return Reason.BATCH_UNPRICED
    if slack is not None and slack < rules.batch_needed:
        return Reason.DEADLINE_TOO_CLOSE
    if not _savings_enough(savings, interactive, rules):
        return Reason.SAVINGS_BELOW_MINIMUM
    return Reason.DEADLINE_ALLOWS_BATCH


def _flex_fits(
    flex: int | None, interactive: int, rules: PolicyRules, slack: timedelta | None
) -> bool:
    if not rules.allow_flex or flex is None or flex >= interactive:
        return False
    return slack is None or slack >= rules.flex_latency


def within_budget(choice: Decision, costs: LaneCosts, budget: BudgetRoom) -> Decision:
    """``choice`` if its lane's cost fits ``budget``, else what ``at_cap`` says (rule 5)."""
    lane = choice.lane
    cost = None if lane is None else lane_cost(costs, lane)
    if lane is None or cost is None or cost <= budget.remaining:
        return choice
    over = f"{lane.value} costs up to {cost} USD; {budget.remaining} USD left in the budget"
    batch = costs.batch
    rebatch = choice.reason is not Reason.BATCH_ESCAPED
    if (
        budget.at_cap is AtCap.BATCH_ONLY
        and rebatch
        and batch is not None
        and batch <= budget.remaining
    ):
        detail = f"{over}; batch instead ({batch} USD)"
        return Decision(Lane.BATCH, Reason.BUDGET_BATCH_ONLY, detail)
    if budget.at_cap is AtCap.REJECT:
        return Decision(None, Reason.BUDGET_EXHAUSTED, over)
    return Decision(None, Reason.BUDGET_EXHAUSTED, f"{over}; held", held=True)


def decide(
    request: Request,
    estimate: TokenEstimate,
    costs: LaneCosts,
    rules: PolicyRules,
    now: datetime,
    budget: BudgetRoom | None = None,
    *,
    escaped: bool = False,
) -> Decision:
    """Pick the lane for ``request`` at ``now`` (see the module docstring for the rules);
    ``budget``: the money left under the budgets that apply (``None``: no budget);
    ``escaped``: the request's batch was cancelled for its deadline before."""
    choice = _by_deadline(request, estimate, costs, rules, now, escaped)
    return choice if budget is None else within_budget(choice, costs, budget)


def _by_deadline(
    request: Request,
    estimate: TokenEstimate,
    costs: LaneCosts,
    rules: PolicyRules,
    now: datetime,
    escaped: bool,
) -> Decision:
    """Rules 1-4: the cheapest lane that meets the deadline and clears the minimum saving."""
    interactive = costs.interactive_fusd
    if interactive is None:
        detail = f"no price for model {request.model} ({estimate.input_tokens} input tokens)"
        return Decision(None, Reason.UNPRICED, detail)
    deadline = deadline_of(request, rules)
    slack = None if deadline is None else deadline - now
    savings = costs.savings_fusd
    why = Reason.BATCH_ESCAPED if escaped else _batch(savings, interactive, rules, slack)
    if why is Reason.DEADLINE_ALLOWS_BATCH:
        return Decision(Lane.BATCH, why, Sentence(Lane.BATCH, why, deadline, savings))
    flex = costs.flex_fusd
    if _flex_fits(flex, interactive, rules, slack):
        assert flex is not None
        reason = why if escaped else Reason.FLEX_CHEAPER_THAN_INTERACTIVE
        text = Sentence(Lane.FLEX, why, deadline, savings, flex, interactive)
        return Decision(Lane.FLEX, reason, text)
    return Decision(Lane.INTERACTIVE, why, Sentence(Lane.INTERACTIVE, why, deadline, savings))

"""The plan stage: estimate each request, price it in every lane, decide its lane, pack batches.

The same functions serve the dry run (``planner plan``, which reads sources without claiming)
and the daemon's planning pass (which records the outcome in the store). Nothing here reads the
clock or touches the store: ``now`` and every collaborator are parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from planner.core.admission import AccountLimits
from planner.core.budget import BudgetBook, BudgetKey, BudgetRules
from planner.core.calibrate import NO_CALIBRATION, InputCalibration
from planner.core.catalog import Catalog, ModelEntry
from planner.core.cost import LaneCosts, compare
from planner.core.enqueued import LearnedLimit, current, enqueue_budget, with_learned
from planner.core.estimate import (
    TokenCounter,
    embedding_inputs,
    encoding_of,
    estimate,
    given_max_output,
)
from planner.core.limits import BatchLimits
from planner.core.model import Lane, Request, TokenEstimate
from planner.core.pack import (
    MAX_BAND,
    PackGroup,
    PackItem,
    PackResult,
    QueueKey,
    deadline_band,
    pack,
)
from planner.core.policy import (
    Decision,
    PolicyRules,
    Reason,
    deadline_of,
    decide,
    lane_cost,
)
from planner.core.turnaround import Turnaround, learn
from planner.pipeline.budgeting import budgeted

_log = logging.getLogger(__name__)

_NO_DEADLINE = datetime.max.replace(tzinfo=UTC)  # sorts after every deadline
_MEMO_MAX = 4096  # remembered (provider, model, policy) windows per planner


class Assessment(NamedTuple):
    """Everything the planner concluded about one request."""

    request: Request
    provider: str | None  # the configured provider it routes to; None = no provider serves it
    entry: ModelEntry | None
    estimate: TokenEstimate
    costs: LaneCosts
    decision: Decision
    deadline: datetime | None = None  # its own, else its policy's default
    band: int = MAX_BAND  # deadline band it packs in (``core/pack.deadline_band``)
    raw_input_tokens: int | None = None  # the estimator's count before calibration
    output_max_given: bool = True  # False: the output estimate is a default (or learned)

    @property
    def lane(self) -> Lane | None:
        return self.decision.lane

    @property
    def reserved(self) -> Decimal | None:
        """The upper-bound cost in the chosen lane (what budgets count while in flight)."""
        lane = self.lane
        return None if lane is None else lane_cost(self.costs, lane)


def _no_budgets(source: str) -> tuple[BudgetKey, ...]:
    return ()


def _no_account_limits(provider: str) -> AccountLimits:
    return AccountLimits()


@dataclass(frozen=True, slots=True)
class Planner:
    """The collaborators of one planning pass, fixed for its duration."""

    catalog: Catalog
    counter: TokenCounter
    route: Callable[[Request], str | None]  # -> the configured provider that can take it
    rules_for: Callable[[Request], PolicyRules]
    default_output_tokens_for: Callable[[Request], int]
    line_bytes: Callable[[Request, str], int]  # request, provider name -> JSONL line bytes
    limits_for: Callable[[PackGroup], BatchLimits]
    account_limits: Callable[[str], AccountLimits] = _no_account_limits  # per provider
    budget_rules: Mapping[BudgetKey, BudgetRules] = field(default_factory=dict)
    budgets_of: Callable[[str], tuple[BudgetKey, ...]] = _no_budgets  # source -> its budgets
    # finished batches' turnarounds per (provider, model), from the store (core/turnaround.py)
    turnarounds: Mapping[QueueKey, Sequence[timedelta]] = field(default_factory=dict)
    # input corrections per model and outputs per (source, model) (core/calibrate.py)
    calibration: Mapping[str, InputCalibration] = field(default_factory=dict)
    learned_outputs: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # whether ``route`` reads the request's body (a Gemini line translated for a compat layer):
    # planning then loads it even when the request was measured (``_with_bodies_where_needed``)
    route_reads_body: Callable[[Request], bool] = lambda request: False
    # (provider, model, id(rules)) -> (rules, rules with the learned batch window): one per pass
    _window_rules: dict[tuple[str, str, int], tuple[PolicyRules, PolicyRules]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def turnaround(self, provider: str, model: str, rules: PolicyRules) -> Turnaround:
        """The turnaround of ``provider``'s ``model``: learned, else the policy's window."""
        return learn(self.turnarounds.get((provider, model), ()), rules.batch_window)

    def _with_window(self, provider: str, model: str, rules: PolicyRules) -> PolicyRules:
        """``rules`` with ``batch_window`` = the turnaround's p95 of ``provider``'s ``model``,
        worked out once per (provider, model, rules) in this planner's life."""
        key = (provider, model, id(rules))
        found = self._window_rules.get(key)
        if found is None or found[0] is not rules:
            if len(self._window_rules) >= _MEMO_MAX:
                self._window_rules.clear()
            p95 = self.turnaround(provider, model, rules).p95
            found = self._window_rules[key] = (rules, replace(rules, batch_window=p95))
        return found[1]  # the rules are kept alive, so their id is not reused

    def assess(
        self,
        request: Request,
        now: datetime,
        book: BudgetBook | None = None,
        *,
        escaped: bool = False,
    ) -> Assessment:
        """Estimate, price and decide ``request``; with ``book``, within its budgets (a request
        that fits is reserved in ``book`` at once, so the next one sees the money taken);
        ``escaped``: its batch was cancelled for its deadline before (never batched again)."""
        model = request.model
        entry = self.catalog.get(model)
        learned = self.learned_outputs
        learned_output = learned.get((request.source, model)) if learned else None
        raw = estimate(
            request,
            entry,
            self.counter,
            default_output_tokens=learned_output or self.default_output_tokens_for(request),
        )
        tokens = raw
        if self.calibration:
            calibration = self.calibration.get(model, NO_CALIBRATION)
            if calibration.active:
                corrected = calibration.correct(raw.input_tokens)
                tokens = TokenEstimate(corrected, raw.output_tokens, f"{raw.method}+calibrated")
        costs = compare(entry, tokens, at=now)
        try:
            provider, refusal = self.route(request), None
        except ValueError as exc:  # its provider cannot take this line; the message says why
            provider, refusal = None, str(exc)
        rules = self.rules_for(request)
        if provider is None:
            detail = refusal or (
                f"no configured provider serves {request.model} on {request.endpoint.value}"
            )
            decision = Decision(None, Reason.NO_PROVIDER, detail)
        else:
            rules = self._with_window(provider, request.model, rules)
            decision = decide(request, tokens, costs, rules, now, escaped=escaped)
            if book is not None:
                decision = budgeted(decision, costs, book, self.budgets_of(request.source))
        deadline = deadline_of(request, rules)
        band = deadline_band(None if deadline is None else deadline - now, rules.batch_needed)
        given = given_max_output(request) is not None
        return Assessment(
            request,
            provider,
            entry,
            tokens,
            costs,
            decision,
            deadline,
            band,
            raw.input_tokens,
            given,
        )

    def measured_is_stale(self, request: Request) -> bool:
        """Whether ``request``'s measured input count was made with another encoding than
        its model has now (then ``estimate`` counts it again, from the body)."""
        measured = request.measured
        if measured is None:
            return False
        return measured.encoding != encoding_of(
            request, self.catalog.get(request.model), self.counter
        )

    def pack_item(self, assessment: Assessment, key: str | None = None) -> PackItem:
        """What the packer needs of a batch-bound request; ``key`` in place of its own (the
        dry run packs with ``""``: it shows batch sizes, never keys)."""
        request, provider = assessment.request, assessment.provider
        if provider is None:
            raise ValueError(f"request {request.key} has no provider and cannot be packed")
        return PackItem(
            request.key if key is None else key,
            PackGroup(provider, request.model, request.endpoint, request.source, assessment.band),
            self.line_bytes(request, provider),
            assessment.estimate.input_tokens,
            embedding_inputs(request),
        )

    def pack(
        self, batch_bound: Iterable[Assessment], budgets: Mapping[QueueKey, int] | None = None
    ) -> PackResult:
        """Batches for the assessments whose lane is batch (others are ignored), earliest
        deadline first; ``budgets``: input tokens each (provider, model) queue may still take
        (``core/enqueued.py``), so the most urgent requests get the room."""
        bound = [a for a in batch_bound if a.lane is Lane.BATCH]
        bound.sort(key=lambda a: a.deadline or _NO_DEADLINE)
        items = (self.pack_item(a) for a in bound)
        return pack(items, self.limits_for, budgets)

    def with_learned_limits(
        self, learned: Mapping[QueueKey, LearnedLimit], now: datetime
    ) -> Planner:
        """This planner with ``min(configured, learned)`` enqueued-token limits."""
        configured = self.limits_for

        def limits(group: PackGroup) -> BatchLimits:
            return with_learned(
                configured(group), current(learned.get((group.provider, group.model)), now)
            )

        return replace(self, limits_for=limits)

    def budgets(
        self, batch_bound: Iterable[Assessment], in_flight: Mapping[QueueKey, int]
    ) -> dict[QueueKey, int]:
        """What each queue of ``batch_bound`` may still take given its ``in_flight`` tokens."""
        found: dict[QueueKey, int] = {}
        for a in batch_bound:
            if a.provider is None:
                continue
            key = (a.provider, a.request.model)
            if key in found:
                continue
            group = PackGroup(a.provider, a.request.model, a.request.endpoint)
            budget = enqueue_budget(
                self.limits_for(group).max_enqueued_tokens, in_flight.get(key, 0)
            )
            if budget is not None:
                found[key] = budget
        return found

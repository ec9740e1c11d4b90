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

from sqlalchemy.orm import Session

from planner.core.admission import AccountLimits, admit
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
from planner.core.model import BODY_NOT_LOADED, Lane, Request, TokenEstimate
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
from planner.core.retirement import retirement_warnings
from planner.core.states import RequestState
from planner.core.turnaround import Turnaround, learn
from planner.pipeline.budgeting import budgeted, open_book
from planner.store import batches as store_batches
from planner.store import calibration as store_calibration
from planner.store import claims as store_claims
from planner.store import limits as store_limits
from planner.store import requests as store_requests
from planner.store.requests import StoredRequest

_log = logging.getLogger(__name__)

_PLANNABLE = (RequestState.QUEUED, RequestState.HELD)
_NO_DEADLINE = datetime.max.replace(tzinfo=UTC)  # sorts after every deadline
_MEMO_MAX = 4096  # remembered (provider, model, policy) windows per planner

# One planner at a time over a shared queue: two replicas packing the same queued requests
# would both try to move them, and one would fail. A transaction-scoped advisory lock per
# planning round on PostgreSQL (SQLite serialises its writers anyway).
PLAN_LOCK = "plan"


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


@dataclass(slots=True)
class PlanStageResult:
    """What one planning pass decided."""

    batches: int = 0
    lanes: dict[str, int] = field(default_factory=dict)
    deferred: int = 0  # batch-bound, left queued: their model's enqueued-token queue is full
    models: set[str] = field(default_factory=set)  # every model decided in this pass
    rejections: dict[str, tuple[int, str]] = field(default_factory=dict)  # rule: (n, 1st why)

    def count(self, lane: str, n: int = 1) -> None:
        self.lanes[lane] = self.lanes.get(lane, 0) + n

    def rejected(self, a: Assessment) -> None:
        n, detail = self.rejections.get(a.decision.reason.value, (0, a.decision.detail))
        self.rejections[a.decision.reason.value] = (n + 1, detail)


_STATE_OF = {
    "batch": RequestState.PLANNED,
    "interactive": RequestState.INTERACTIVE,
    "flex": RequestState.FLEX,
    "held": RequestState.HELD,
    "rejected": RequestState.REJECTED,
}


def _record_decisions(
    session: Session, assessed: list[tuple[StoredRequest, Assessment]], now: datetime
) -> PlanStageResult:
    """Estimates, decisions and reservations for all; every request but the batch-bound ones
    moves now (batch ones when packed, below). A held request still held stays as it is."""
    result = PlanStageResult()
    store_requests.record_assessments(
        session,
        (
            store_requests.Assessed(
                s.id,
                a.estimate,
                a.decision.reason.value,
                a.reserved,
                a.raw_input_tokens,
                a.output_max_given,
            )
            for s, a in assessed
        ),
        now,
    )
    # one write per (state, reason, lane, provider), not one per request
    moves: dict[tuple[RequestState, str, str | None, str | None], list[int]] = {}
    for stored, a in assessed:
        outcome = a.decision.outcome
        if outcome == Lane.BATCH.value:
            continue
        state = _STATE_OF[outcome]
        if state is not stored.state:
            lane = a.lane
            reason = f"{a.decision.reason.value}: {a.decision.detail}"
            key = (state, reason, None if lane is None else lane.value, a.provider)
            moves.setdefault(key, []).append(stored.id)
        result.count(outcome)
    for (state, reason, lane_name, provider), ids in moves.items():
        store_requests.transition_requests(
            session,
            ids,
            state,
            now,
            expected=tuple(s for s in _PLANNABLE if s is not state),
            reason=reason,
            lane=lane_name,
            provider=provider,
        )
    return result


def _with_bodies_where_needed(
    session: Session, planner: Planner, queued: list[StoredRequest]
) -> list[StoredRequest]:
    """``queued`` (read without the bodies of measured requests), with the whole request
    where planning needs more than the measured facts: its model's encoding changed since
    intake (a reloaded catalog), so it is counted again; or routing it reads its body."""
    needed = [
        s.id
        for s in queued
        if s.request.body is BODY_NOT_LOADED
        and (planner.measured_is_stale(s.request) or planner.route_reads_body(s.request))
    ]
    if not needed:
        return queued
    whole = {s.id: s for s in store_requests.load(session, needed)}
    return [whole.get(s.id, s) for s in queued]


def _escaped(stored: StoredRequest) -> bool:
    return stored.decision == Reason.BATCH_ESCAPED.value


def _warn_retirements(catalog: Catalog, models: set[str], now: datetime) -> None:
    """Once per pass, one warning per retired or soon-retiring model that was decided."""
    entries = [e for e in (catalog.get(m) for m in models) if e is not None]
    for warning in retirement_warnings(entries, now):
        _log.warning(
            "model %s %s",
            warning.model,
            warning.message,
            extra={"event": f"model_{warning.kind.value}", "model": warning.model},
        )


def _warn_rejections(result: PlanStageResult) -> None:
    """Once per pass, one line per rule that rejected requests, with the first one's reason:
    a rejection is never silent (``planner status`` counts them; the store keeps each reason)."""
    for rule, (n, detail) in sorted(result.rejections.items()):
        _log.warning(
            "%d request(s) rejected (%s), e.g. %s",
            n,
            rule,
            detail,
            extra={"event": "requests_rejected", "reason": rule, "count": n},
        )


def run_plan_stage(
    planner: Planner, session_factory: Callable[[], Session], now: datetime, chunk: int
) -> PlanStageResult:
    """Decide every queued request and record batch intents, ``chunk`` requests per round.

    Each round is one transaction: estimates, lane decisions and the batch intents (batch row
    ``planned``, its requests ``planned``) commit together or not at all. A round starts by
    taking ``PLAN_LOCK``; while another replica holds it, this pass plans nothing (not an error).
    Enqueued-token limits are ``min(configured, learned)``, and a model's batches are only
    planned while its queue (the unfinished batches' tokens) has room; the rest stay queued for
    a later pass.

    Held requests are decided again with the queued ones (the budget may have room now). With
    budgets, each round reads them from the store under an advisory lock, so replicas sharing
    the store take turns and never spend the same money twice.
    """
    total = PlanStageResult()
    last_id: int | None = None
    while True:
        with session_factory() as session, session.begin():
            if not store_claims.try_advisory_lock(session, PLAN_LOCK):
                _log.info(
                    "another replica is planning; this pass leaves the queue to it",
                    extra={"event": "plan_busy_elsewhere"},
                )
                return total
            if planner.budget_rules:
                store_claims.advisory_lock(session, "plan:budgets")
            queued = list(
                store_requests.queued_for_planning(
                    session, chunk, after_id=last_id, states=_PLANNABLE, bodies=False
                )
            )
            queued = _with_bodies_where_needed(session, planner, queued)
            if not queued:
                _warn_retirements(planner.catalog, total.models, now)
                _warn_rejections(total)
                return total
            last_id = queued[-1].id
            round_planner = replace(
                planner.with_learned_limits(store_limits.learned_limits(session), now),
                turnarounds=store_batches.turnarounds(session),
                calibration=store_calibration.input_calibrations(session),
                learned_outputs=store_calibration.learned_outputs(session),
            )
            book = open_book(session, round_planner.budget_rules, round_planner.budgets_of, now)
            assessed = [
                (s, round_planner.assess(s.request, now, book, escaped=_escaped(s))) for s in queued
            ]
            total.models.update(a.request.model for _, a in assessed)
            for _, a in assessed:
                if a.decision.outcome == "rejected":
                    total.rejected(a)
            round_result = _record_decisions(session, assessed, now)
            ids = {(a.request.source, a.request.key): s.id for s, a in assessed}
            batch_bound = [a for _, a in assessed if a.lane is Lane.BATCH]
            budgets = round_planner.budgets(batch_bound, store_batches.enqueued_tokens(session))
            packed = round_planner.pack(batch_bound, budgets)
            admitted, waiting = admit(
                packed.batches,
                lambda b: b.group.provider,
                lambda b: b.bytes,
                round_planner.account_limits,
                store_batches.in_use(session),
            )
            round_result.deferred = len(packed.deferred) + sum(len(b.keys) for b in waiting)
            for planned in admitted:
                source = planned.group.source
                store_batches.create_batch_intent(
                    session,
                    store_batches.new_batch_id(),
                    planned.group.provider,
                    planned.group.model,
                    planned.group.endpoint,
                    [ids[(source, k)] for k in planned.keys],
                    now,
                    bytes=planned.bytes,
                    est_input_tokens=planned.input_tokens,
                )
                round_result.batches += 1
                round_result.count(Lane.BATCH.value, len(planned.keys))
            for oversized in packed.oversized:
                store_requests.transition_request(
                    session,
                    ids[(oversized.item.group.source, oversized.item.key)],
                    RequestState.REJECTED,
                    now,
                    expected=(RequestState.QUEUED, RequestState.HELD),
                    reason=f"too_large: alone it breaks the batch limit {oversized.limit}",
                )
                round_result.count("rejected")
        if round_result.deferred:
            _log.info(
                "%d batch-bound requests wait for room (enqueued tokens, open jobs, storage)",
                round_result.deferred,
                extra={"event": "plan_deferred_queue_full"},
            )
        total.batches += round_result.batches
        total.deferred += round_result.deferred
        for lane, n in round_result.lanes.items():
            total.count(lane, n)

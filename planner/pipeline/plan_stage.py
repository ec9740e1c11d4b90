"""The daemon's planning pass: decide every queued request with the ``Planner``
(``pipeline/plan.py``) and record the outcome in the store, batch intents included.

Apart from ``Planner`` so that the dry run (``planner plan``), which never writes the store and
on a machine without one never opens it, does not import the store and SQLAlchemy (a third of
its start-up).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.orm import Session

from planner.core.admission import admit
from planner.core.catalog import Catalog
from planner.core.model import BODY_NOT_LOADED, Lane
from planner.core.policy import Reason
from planner.core.retirement import retirement_warnings
from planner.core.states import RequestState
from planner.pipeline.budgeting import open_book
from planner.pipeline.plan import Assessment, Planner
from planner.store import batches as store_batches
from planner.store import calibration as store_calibration
from planner.store import claims as store_claims
from planner.store import limits as store_limits
from planner.store import requests as store_requests
from planner.store.requests import StoredRequest

_log = logging.getLogger(__name__)

_PLANNABLE = (RequestState.QUEUED, RequestState.HELD)

# One planner at a time over a shared queue: two replicas packing the same queued requests
# would both try to move them, and one would fail. A transaction-scoped advisory lock per
# planning round on PostgreSQL (SQLite serialises its writers anyway).
PLAN_LOCK = "plan"


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

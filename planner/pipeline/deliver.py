"""Settling outcomes: price what was billed, write it to the sinks, then commit it.

Used by both collect (batch lines) and the interactive executor. Order: the sink files of one
delivery are written first, atomically and under a ``delivery_id`` that the same outcomes
always get again; then one transaction records the ledger (unique per request attempt) and the
state changes. A crash in between repeats the delivery, which rewrites the same files: every
request ends with exactly one result line or one dead-letter line. Queued sinks (webhooks) are
not called here: their records go into the store's outbox in that same transaction, and
``pipeline/outbox.py`` sends them.

A rejected request (the policy would not send it) gets its dead-letter line here too, after
planning recorded the rejection (:func:`deliver_rejected`).

Failed lines are retried (back to ``queued``, re-planned) while the failure is retryable and
the request has attempts left; otherwise they are dead-lettered with the provider's message,
their ``reason`` (the error code, which ``planner requeue --reason`` names) and, for a result
line that could not be read, its ``raw`` text.
"""

from __future__ import annotations

import hashlib
import logging
from array import array
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from planner import crashpoints
from planner.core.cost import actual_cost
from planner.core.model import Lane, Usage
from planner.core.states import RequestState
from planner.pipeline.context import StageContext
from planner.pipeline.outbox import outbox_entries
from planner.providers.base import FLEX_TIER, LineResult
from planner.sinks.base import Record, is_queued
from planner.store import ledger as store_ledger
from planner.store import outbox as store_outbox
from planner.store import rejections as store_rejections
from planner.store import requests as store_requests
from planner.store.requests import StoredRequest

_log = logging.getLogger(__name__)

REJECTED_CHUNK = 500  # rejected requests per dead-letter file


@dataclass(frozen=True, slots=True)
class Outcome:
    stored: StoredRequest
    result: LineResult
    lane: Lane


@dataclass(slots=True)
class SettleResult:
    """What one settle did, for the observer's logs and metrics. It keeps sums and two integers
    per billed result, never the requests: a batch is settled a chunk at a time, and a list of
    every settled request kept their rows alive until the collect stage was done."""

    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    cost_usd: Decimal = Decimal(0)  # of the billed results with a price (the ledger's cost)
    saved_usd: Decimal = Decimal(0)  # their interactive equivalent minus their cost
    sources: set[str] = field(default_factory=set)  # of the billed results
    # per (provider, model): billed and estimated input tokens of each billed result that had
    # an estimate, in turn, as 8-byte integers (a collect stage of a million results keeps them)
    input_tokens: dict[tuple[str, str], array[int]] = field(default_factory=dict)

    def bill(
        self, stored: StoredRequest, usage: Usage, cost: Decimal | None, equiv: Decimal | None
    ) -> None:
        """Count one billed result in."""
        request, estimate = stored.request, stored.estimate
        self.sources.add(request.source)
        if cost is not None:
            self.cost_usd += cost
            if equiv is not None:
                self.saved_usd += equiv - cost
        if estimate is not None:
            group = (stored.provider or "unknown", request.model)
            pairs = self.input_tokens.get(group)
            if pairs is None:
                pairs = self.input_tokens[group] = array("q")
            pairs.extend((usage.input_tokens, estimate.input_tokens))

    def add(self, other: SettleResult) -> None:
        """Count ``other`` in (a batch settled in chunks reports one result)."""
        self.succeeded += other.succeeded
        self.retried += other.retried
        self.dead += other.dead
        self.cost_usd += other.cost_usd
        self.saved_usd += other.saved_usd
        self.sources |= other.sources
        for group, pairs in other.input_tokens.items():
            self.input_tokens.setdefault(group, array("q")).extend(pairs)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _usage(outcome: Outcome) -> Usage:
    if outcome.result.usage is not None:
        return outcome.result.usage
    est = outcome.stored.estimate  # the provider reported no usage (Gemini embedContent)
    return Usage(input_tokens=est.input_tokens if est else 0, output_tokens=0)


def billed_lane(o: Outcome) -> Lane:
    """The lane a result is billed in: the tier the provider says answered a synchronous call
    (a flex request answered by the default tier costs the interactive price), else the lane
    it was sent in. Batch lines are batch-priced whatever tier their body names."""
    tier = o.result.tier
    if o.lane is Lane.BATCH or tier is None:
        return o.lane
    return Lane.FLEX if tier == FLEX_TIER else Lane.INTERACTIVE


def _base_record(o: Outcome, now: datetime) -> dict[str, Any]:
    return _request_record(o.stored, o.lane, now)


def _request_record(stored: StoredRequest, lane: Lane | None, now: datetime) -> dict[str, Any]:
    r = stored.request
    return {
        "source": r.source,
        "id": r.key,
        "model": r.model,
        "endpoint": r.endpoint.value,
        "provider": stored.provider,
        "lane": None if lane is None else lane.value,
        "batch_id": stored.batch_id if lane is Lane.BATCH else None,
        "metadata": dict(r.metadata),
        "completed_at": now.isoformat(),
    }


def _rejected_record(stored: StoredRequest, now: datetime) -> dict[str, Any]:
    """A rejected request's dead-letter line: its rule as ``reason``, the detail as message."""
    code, _, detail = (stored.reason or "rejected").partition(": ")
    return _request_record(stored, None, now) | {
        "state": "rejected",
        "reason": code,
        "error": {"code": code, "message": detail or code},
        "attempts": stored.attempts,
    }


def rejected_delivery_id(chunk: Sequence[StoredRequest]) -> str:
    """The same rows always get the same name (a crash rewrites the file), and rows of another
    store do not: their ingestion times (to the microsecond) are part of the digest."""
    digest = hashlib.sha256(usedforsecurity=False)
    for s in chunk:
        digest.update(
            f"{s.id}|{s.request.source}|{s.request.key}|{s.request.received_at}|".encode()
        )
    return f"rejected-{digest.hexdigest()[:32]}"


def deliver_rejected(ctx: StageContext, now: datetime) -> int:
    """Write the dead-letter line of every rejected request that has none yet, then record it
    (``store/rejections.py``); returns how many lines were written."""
    written = 0
    while True:
        with ctx.session_factory() as session:
            chunk = store_rejections.undelivered(session, REJECTED_CHUNK)
        if not chunk:
            return written
        dead: dict[str, list[Record]] = defaultdict(list)
        for stored in chunk:
            dead[stored.request.source].append(_rejected_record(stored, now))
        name = rejected_delivery_id(chunk)
        queued: list[store_outbox.Entry] = []  # for queued sinks (webhooks): committed below
        for source, records in dead.items():
            for sink in ctx.sinks_for(source):
                if is_queued(sink):
                    queued += outbox_entries(sink.name, [], records)
                else:
                    sink.deliver(name, [], records)
        with ctx.session_factory() as session, session.begin():
            store_rejections.mark_delivered(session, chunk)
            store_outbox.enqueue(session, queued, now)
        written += len(chunk)


def _retry(o: Outcome, max_attempts: int) -> bool:
    return o.result.retryable and o.stored.attempts < max_attempts


def settle(
    ctx: StageContext,
    delivery_id: str,
    outcomes: Sequence[Outcome],
    now: datetime,
    *,
    extra_writes: Callable[[Session], None] | None = None,
) -> SettleResult:
    """Deliver and commit ``outcomes`` (see the module docstring)."""
    result = SettleResult()
    results: dict[str, list[Record]] = defaultdict(list)
    dead: dict[str, list[Record]] = defaultdict(list)
    billed: list[store_ledger.Billed] = []
    for o in outcomes:
        source = o.stored.request.source
        if o.result.ok:
            usage = _usage(o)
            lane = billed_lane(o)
            entry = ctx.catalog.get(o.stored.request.model)
            cost = actual_cost(entry, lane, usage, now) if entry else None
            equiv = actual_cost(entry, Lane.INTERACTIVE, usage, now) if entry else None
            record = _base_record(o, now) | {
                "lane": lane.value,
                "service_tier": o.result.tier,
                "response": o.result.response,
                "usage": {
                    "input_tokens": usage.input_tokens,
                    "cached_input_tokens": usage.cached_input_tokens,
                    "output_tokens": usage.output_tokens,
                },
                "cost_usd": _money(cost),
                "interactive_equivalent_usd": _money(equiv),
                "savings_usd": _money(None if cost is None or equiv is None else equiv - cost),
            }
            results[source].append(record)
            billed.append(store_ledger.Billed(o.stored.id, usage, cost, equiv, lane))
            result.bill(o.stored, usage, cost, equiv)
        elif not _retry(o, ctx.max_attempts):
            record = _base_record(o, now) | {
                "reason": o.result.error_code,
                "error": {"code": o.result.error_code, "message": o.result.error_message},
                "attempts": o.stored.attempts,
            }
            if o.result.raw is not None:
                record["raw"] = o.result.raw
            dead[source].append(record)
    queued: list[store_outbox.Entry] = []  # for queued sinks (webhooks): committed below
    for source in set(results) | set(dead):
        for sink in ctx.sinks_for(source):
            if is_queued(sink):
                queued += outbox_entries(sink.name, results.get(source, []), dead.get(source, []))
            else:
                sink.deliver(delivery_id, results.get(source, []), dead.get(source, []))
    crashpoints.reached("after_sink_write")
    with ctx.session_factory() as session, session.begin():
        store_ledger.record_results(session, billed, now)
        store_outbox.enqueue(session, queued, now)
        succeeded: dict[Lane, list[int]] = defaultdict(list)
        for o in outcomes:
            if o.result.ok:
                succeeded[o.lane].append(o.stored.id)
            else:
                _fail(session, o, now, ctx.max_attempts, result)
        for lane, ids in succeeded.items():  # one write per lane, not one per request
            store_requests.transition_requests(
                session, ids, RequestState.SUCCEEDED, now, reason=f"{lane.value} result"
            )
            result.succeeded += len(ids)
        if extra_writes is not None:
            extra_writes(session)
    return result


def _fail(
    session: Session, o: Outcome, now: datetime, max_attempts: int, result: SettleResult
) -> None:
    request_id = o.stored.id
    message = f"{o.result.error_code}: {o.result.error_message or ''}".strip()
    store_requests.transition_request(
        session, request_id, RequestState.FAILED, now, reason=message, error_message=message
    )
    if _retry(o, max_attempts):
        store_requests.transition_request(
            session,
            request_id,
            RequestState.QUEUED,
            now,
            reason=f"retry after attempt {o.stored.attempts}: {o.result.error_code}",
            batch_id=None,
        )
        result.retried += 1
    else:
        store_requests.transition_request(
            session, request_id, RequestState.DEAD, now, reason=message
        )
        result.dead += 1

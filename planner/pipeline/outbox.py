"""The outbox stage: send the records queued sinks (webhooks) have not accepted yet.

``settle`` (``pipeline/deliver.py``) commits each record for a queued sink as an outbox row in
the same transaction as its result, so nothing is lost if the receiver is down or the process
dies. This stage leases due rows (``store/outbox.py``), calls the sink once per row, deletes
the row when the sink accepted it, and otherwise keeps it with its next attempt time: capped
exponential back-off with full jitter from ``core/retry.py`` (the receiver's ``Retry-After``
wins), and never a give-up — a row that would be given up is tried again after the longest
back-off. After a receiver failed to answer (down, timing out, 5xx, 429), the rest of that
sink's rows wait for a later pass instead of piling more calls on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from planner.core import json_text
from planner.core.retry import DEFAULT_POLICY, Retry, RetryPolicy, decide
from planner.errors import ProviderError
from planner.pipeline.context import StageContext
from planner.sinks.base import Record, is_queued
from planner.store import outbox as store_outbox

_log = logging.getLogger(__name__)

PER_PASS = 500  # rows leased at once
LEASE = timedelta(minutes=5)  # a sender that died gives its rows up after this


@dataclass(slots=True)
class OutboxResult:
    delivered: dict[str, int] = field(default_factory=dict)  # by sink
    failed: dict[str, int] = field(default_factory=dict)  # by sink: attempts that failed


def record_key(sink: str, event: str, record: Record) -> str:
    """One idempotency key per record and sink, stable on every retry of it."""
    identity = json.dumps(
        [sink, event, record.get("source"), record.get("id"), record.get("completed_at")]
    )
    return "plk_" + hashlib.sha256(identity.encode("utf-8")).hexdigest()[:40]


def outbox_entries(
    sink: str, results: Sequence[Record], dead: Sequence[Record]
) -> list[store_outbox.Entry]:
    """The outbox rows of one delivery for the queued sink ``sink``."""
    entries = []
    for event, records in (("result", results), ("dead", dead)):
        for record in records:
            body = json_text.dumps(record)
            entries.append(store_outbox.Entry(sink, record_key(sink, event, record), event, body))
    return entries


def _next_attempt(
    error: ProviderError, attempts: int, now: datetime, rng: random.Random, policy: RetryPolicy
) -> datetime:
    decision = decide(error, attempts, now, rng, policy)
    if isinstance(decision, Retry):
        return decision.at
    return now + timedelta(seconds=policy.cap_seconds)  # never given up: kept, tried again


def run_outbox_stage(
    ctx: StageContext, now: datetime, *, rng: random.Random | None = None
) -> OutboxResult:
    """Send every due outbox row once (see the module docstring)."""
    result = OutboxResult()
    sinks = {name: sink for name, sink in ctx.sinks.items() if is_queued(sink)}
    if not sinks:
        return result
    rng = rng or random.Random()
    with ctx.session_factory() as session, session.begin():
        rows = store_outbox.claim_due(session, ctx.owner, sinks, PER_PASS, LEASE, now)
    down: set[str] = set()
    untried: list[int] = []
    for row in rows:
        if row.sink in down or ctx.stop_requested():
            untried.append(row.id)
            continue
        sink = sinks[row.sink]
        record = json_text.loads(row.body_json)
        try:
            if row.event == "dead":
                sink.deliver(row.key, [], [record])
            else:
                sink.deliver(row.key, [record], [])
        except ProviderError as exc:
            policy: RetryPolicy = getattr(sink, "retry", DEFAULT_POLICY)
            at = _next_attempt(exc, row.attempts + 1, now, rng, policy)
            with ctx.session_factory() as session, session.begin():
                store_outbox.failed(session, row.id, ctx.owner, at, str(exc))
            result.failed[row.sink] = result.failed.get(row.sink, 0) + 1
            if exc.retryable:
                down.add(row.sink)
            _log.warning(
                "%s; record %s kept, next attempt at %s",
                exc,
                row.key,
                at.isoformat(),
                extra={
                    "event": "sink_delivery_failed",
                    "sink": row.sink,
                    "key": row.key,
                    "attempts": row.attempts + 1,
                },
            )
            continue
        with ctx.session_factory() as session, session.begin():
            store_outbox.delivered(session, row.id, ctx.owner)
        result.delivered[row.sink] = result.delivered.get(row.sink, 0) + 1
    if untried:
        with ctx.session_factory() as session, session.begin():
            store_outbox.release(session, untried, ctx.owner)
    return result

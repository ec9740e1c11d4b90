"""When to plan before the scheduled pass: the flush triggers, as a pure decision.

``schedule.submit`` may be a nightly cron; waiting for it is right for most of the queue, and
wrong in four cases, each a reason to plan now:

* ``count`` / ``tokens`` — ``flush.max_requests`` requests or ``flush.max_tokens`` input tokens
  wait: a full batch gains nothing by waiting;
* ``wait`` — the oldest queued request has waited ``flush.max_wait``;
* ``deadline`` — a queued request's deadline comes before the next scheduled pass plus the
  longest batch window (and a margin): planned now it can still go by batch, at half the price;
  planned at the next pass it would have to go interactive, or miss its deadline. Requests sent
  back to the queue (a deadline escape, an expired batch) are caught by this too.

One more rule keeps a large queue from being re-planned every check: when the last pass
planned nothing (everything deferred, e.g. the enqueued-token queue is full) and the queue is
as it was then, there is nothing new to decide (the daemon forgets that pass as soon as a batch
finishes, since that frees room in the queue). Pure: ``now`` is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

DEADLINE_MARGIN = timedelta(minutes=30)  # planning, the interactive lane, a late check


class FlushReason(StrEnum):
    COUNT = "count"
    TOKENS = "tokens"
    WAIT = "wait"
    DEADLINE = "deadline"


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """The queued requests, summed up by the store."""

    count: int
    tokens: int  # estimated input tokens
    oldest_waiting: datetime | None  # when the longest-waiting request was queued
    earliest_deadline: datetime | None  # of the requests that carry their own
    earliest_undated: datetime | None  # received_at of the oldest request without a deadline


@dataclass(frozen=True, slots=True)
class FlushRules:
    max_requests: int | None
    max_tokens: int | None
    max_wait: timedelta
    batch_window: timedelta  # the longest of the policies'
    default_deadline: timedelta | None  # the shortest of the policies' (None: none has one)
    margin: timedelta = DEADLINE_MARGIN


def effective_deadline(queue: QueueSummary, rules: FlushRules) -> datetime | None:
    """The earliest deadline in the queue, counting the policy default for undated requests."""
    candidates = [queue.earliest_deadline]
    if queue.earliest_undated is not None and rules.default_deadline is not None:
        candidates.append(queue.earliest_undated + rules.default_deadline)
    known = [d for d in candidates if d is not None]
    return min(known) if known else None


def flush_reasons(
    queue: QueueSummary,
    rules: FlushRules,
    now: datetime,
    next_pass: datetime | None,
    *,
    unchanged_since_idle_pass: bool = False,
) -> list[FlushReason]:
    """Why the queue should be planned now rather than at ``next_pass`` (empty: it can wait).

    ``unchanged_since_idle_pass``: the last pass planned nothing and the queue is the same;
    then only a deadline that no longer leaves a batch window counts (the next pass decides
    differently: those requests go interactive instead of waiting for room in the queue).
    """
    if queue.count == 0:
        return []
    if unchanged_since_idle_pass:
        deadline = effective_deadline(queue, rules)
        if deadline is not None and deadline <= now + rules.batch_window:
            return [FlushReason.DEADLINE]
        return []
    reasons = []
    if rules.max_requests is not None and queue.count >= rules.max_requests:
        reasons.append(FlushReason.COUNT)
    if rules.max_tokens is not None and queue.tokens >= rules.max_tokens:
        reasons.append(FlushReason.TOKENS)
    if queue.oldest_waiting is not None and now - queue.oldest_waiting >= rules.max_wait:
        reasons.append(FlushReason.WAIT)
    deadline = effective_deadline(queue, rules)
    if deadline is not None:
        horizon = (next_pass or now) + rules.batch_window + rules.margin
        if next_pass is None or deadline <= horizon:
            reasons.append(FlushReason.DEADLINE)
    return reasons

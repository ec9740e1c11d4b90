"""When to plan before the scheduled pass: the flush triggers, as a pure decision.

``schedule.submit`` may be a nightly cron; waiting for it is right for most of the queue, and
wrong in four cases, each a reason to plan now:

* ``count`` / ``tokens`` — ``flush.max_requests`` requests or ``flush.max_tokens`` input tokens
  wait: a full batch gains nothing by waiting;
* ``wait`` — the oldest queued request has waited ``flush.max_wait``;
* ``deadline`` — a queued request's deadline comes before the next scheduled pass plus its
  policy's batch window (and a margin): planned now it can still go by batch, at half the
  price; planned at the next pass it would have to go interactive, or miss its deadline.
  Requests sent back to the queue (a deadline escape, an expired batch) are caught by this too.
  Each source is measured by its own policy's window and default deadline: with one window per
  queue, a 6 h policy's requests would be judged by a 24 h policy's window.

One more rule keeps a large queue from being re-planned every check: when the last pass
planned nothing (everything deferred, e.g. the enqueued-token queue is full) and the queue is
as it was then, there is nothing new to decide (the daemon forgets that pass as soon as a batch
finishes, since that frees room in the queue). Pure: ``now`` is a parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

DEADLINE_MARGIN = timedelta(minutes=30)  # planning, the interactive lane, a late check


class FlushReason(StrEnum):
    COUNT = "count"
    TOKENS = "tokens"
    WAIT = "wait"
    DEADLINE = "deadline"


@dataclass(frozen=True, slots=True)
class SourceDeadlines:
    """The deadlines of one source's queued requests, summed up by the store."""

    source: str
    earliest_deadline: datetime | None  # of the requests that carry their own
    earliest_undated: datetime | None  # received_at of the oldest request without a deadline


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """The queued requests, summed up by the store."""

    count: int
    tokens: int  # estimated input tokens
    oldest_waiting: datetime | None  # when the longest-waiting request was queued
    deadlines: tuple[SourceDeadlines, ...] = ()  # one per source with queued requests


@dataclass(frozen=True, slots=True)
class DeadlineRules:
    """What one policy says about time: its batch window and its default deadline."""

    batch_window: timedelta
    default_deadline: timedelta | None


@dataclass(frozen=True)
class FlushRules:
    max_requests: int | None
    max_tokens: int | None
    max_wait: timedelta
    default: DeadlineRules  # for a source not in ``by_source`` (e.g. one removed from config)
    by_source: Mapping[str, DeadlineRules] = field(default_factory=dict)
    margin: timedelta = DEADLINE_MARGIN

    def for_source(self, source: str) -> DeadlineRules:
        return self.by_source.get(source, self.default)


def effective_deadline(group: SourceDeadlines, rules: DeadlineRules) -> datetime | None:
    """The source's earliest deadline, counting its policy's default for undated requests."""
    candidates = [group.earliest_deadline]
    if group.earliest_undated is not None and rules.default_deadline is not None:
        candidates.append(group.earliest_undated + rules.default_deadline)
    known = [d for d in candidates if d is not None]
    return min(known) if known else None


def _deadline_due(
    queue: QueueSummary, rules: FlushRules, limit: Callable[[DeadlineRules], datetime | None]
) -> bool:
    """Whether some source's effective deadline is at or before ``limit`` of its rules
    (``None``: any deadline at all)."""
    for group in queue.deadlines:
        group_rules = rules.for_source(group.source)
        deadline = effective_deadline(group, group_rules)
        if deadline is None:
            continue
        until = limit(group_rules)
        if until is None or deadline <= until:
            return True
    return False


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
        if _deadline_due(queue, rules, lambda r: now + r.batch_window):
            return [FlushReason.DEADLINE]
        return []
    reasons = []
    if rules.max_requests is not None and queue.count >= rules.max_requests:
        reasons.append(FlushReason.COUNT)
    if rules.max_tokens is not None and queue.tokens >= rules.max_tokens:
        reasons.append(FlushReason.TOKENS)
    if queue.oldest_waiting is not None and now - queue.oldest_waiting >= rules.max_wait:
        reasons.append(FlushReason.WAIT)
    if _deadline_due(
        queue,
        rules,
        lambda r: None if next_pass is None else next_pass + r.batch_window + rules.margin,
    ):
        reasons.append(FlushReason.DEADLINE)
    return reasons

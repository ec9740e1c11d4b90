"""How long our own batches take, learned from the ones that finished: p50 and p95 per provider
and model, and what that means for the policy's batch window.

Providers promise 24 hours and usually answer much sooner, or, on a bad day, later. Until a
(provider, model) has ``MIN_BATCHES`` finished batches the configured ``batch_window`` is the
prior for its p95; from then on the p95 of what we saw replaces it. A request goes by batch
only when its deadline leaves that p95 plus one retry: the way out if the batch is late (the
deadline escape's cancel, re-plan and interactive answer, ``core/escape.py``).

Percentiles are nearest-rank (the smallest value with at least q% of the values at or below
it), so they are always durations we actually saw. Pure: durations are parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

MIN_BATCHES = 20  # finished batches before the learned p95 replaces the configured prior


@dataclass(frozen=True, slots=True)
class Turnaround:
    """What a (provider, model)'s batches take; ``learned`` False: the prior is in force."""

    p50: timedelta | None  # None until learned (the prior says nothing about the median)
    p95: timedelta
    batches: int  # finished batches seen
    learned: bool


def percentile(durations: list[timedelta], q: int) -> timedelta:
    """The nearest-rank ``q``-th percentile of ``durations`` (``0 < q <= 100``, not empty)."""
    if not durations or not 0 < q <= 100:
        raise ValueError("percentile needs durations and 0 < q <= 100")
    ordered = sorted(durations)
    return ordered[math.ceil(q / 100 * len(ordered)) - 1]


def learn(
    durations: Iterable[timedelta], prior_p95: timedelta, min_batches: int = MIN_BATCHES
) -> Turnaround:
    """p50/p95 of ``durations`` once there are ``min_batches`` of them, else the prior."""
    seen = list(durations)
    if len(seen) < min_batches:
        return Turnaround(None, prior_p95, len(seen), learned=False)
    return Turnaround(percentile(seen, 50), percentile(seen, 95), len(seen), learned=True)


def batch_time_needed(turnaround: Turnaround, retry: timedelta) -> timedelta:
    """The deadline slack a request needs to go by batch: the p95 plus one retry."""
    return turnaround.p95 + retry

"""Learned turnaround (nearest-rank p50/p95 with a prior) and the deadline bands of packing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from planner.core.escape import ONE_RETRY
from planner.core.pack import MAX_BAND, deadline_band
from planner.core.turnaround import MIN_BATCHES, batch_time_needed, learn, percentile

H = timedelta(hours=1)
M = timedelta(minutes=1)


def test_percentile_is_nearest_rank() -> None:
    durations = [timedelta(minutes=m) for m in range(1, 101)]  # 1..100 min
    assert percentile(durations, 50) == 50 * M
    assert percentile(durations, 95) == 95 * M
    assert percentile(durations, 100) == 100 * M
    assert percentile([3 * H, 1 * H, 2 * H], 50) == 2 * H  # ceil(1.5) = 2nd of the sorted
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([H], 0)


def test_the_prior_holds_until_twenty_batches_then_the_learned_p95() -> None:
    prior = 24 * H
    nineteen = [2 * H] * (MIN_BATCHES - 1)
    early = learn(nineteen, prior)
    assert (early.p50, early.p95, early.batches, early.learned) == (None, prior, 19, False)
    # 20 batches: 18 of 1 h, 2 of 5 h -> p50 1 h; p95 = the 19th of 20 sorted = 5 h
    seen = [H] * 18 + [5 * H] * 2
    learned = learn(seen, prior)
    assert (learned.p50, learned.p95, learned.batches, learned.learned) == (H, 5 * H, 20, True)
    # a request may go by batch when its deadline leaves p95 plus one retry (27 min)
    assert ONE_RETRY == 27 * M
    assert batch_time_needed(learned, ONE_RETRY) == 5 * H + 27 * M
    # a slow provider makes the window longer than the configured one
    slow = learn([30 * H] * 20, prior)
    assert batch_time_needed(slow, ONE_RETRY) > prior


@pytest.mark.parametrize(
    ("slack", "needed", "band"),
    [
        (None, 24 * H, MAX_BAND),  # no deadline: the long band
        (25 * H, 24 * H, 1),  # just enough for one batch
        (47 * H, 24 * H, 1),
        (48 * H, 24 * H, 2),
        (40 * H, 37 * M, MAX_BAND),  # 40 h with a 37 min window: long
        (20 * M, 37 * M, 1),  # never batched, but never below band 1
        (10 * 24 * H, 24 * H, MAX_BAND),
        (H, timedelta(0), MAX_BAND),
    ],
)
def test_deadline_band(slack: timedelta | None, needed: timedelta, band: int) -> None:
    assert deadline_band(slack, needed) == band

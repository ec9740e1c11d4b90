"""Deadline escape: when the slack before a batch's earliest deadline is gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.core.escape import (
    EscapeRules,
    earliest,
    interactive_time,
    should_escape,
    time_needed,
)
from planner.core.limits import RateLimits

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
RULES = EscapeRules(
    cancel_time=timedelta(minutes=10),
    replan_time=timedelta(minutes=15),
    interactive_latency=timedelta(minutes=2),
)


@pytest.mark.parametrize(
    ("deadline", "now", "expected"),
    [
        (None, T0, False),  # no deadline: wait for the provider, or expiry
        (T0 + timedelta(hours=1), T0, False),  # 60 min left > 27 min needed
        (T0 + timedelta(minutes=27), T0, True),  # exactly the time needed: go now
        (T0 + timedelta(minutes=27, seconds=1), T0, False),  # one second of slack left
        (T0 - timedelta(minutes=5), T0, True),  # already past
    ],
)
def test_escape_when_the_slack_is_gone(
    deadline: datetime | None, now: datetime, expected: bool
) -> None:
    # needed = 10 (cancel) + 15 (re-plan) + 2 (latency) + 0 (no rate caps) = 27 min
    needed = time_needed(50, 10_000, None, RULES)
    assert needed == timedelta(minutes=27)
    assert should_escape(deadline, needed, now) is expected


@pytest.mark.parametrize(
    ("requests", "tokens", "rate", "minutes"),
    [
        (100, 1_000, None, 2),  # no caps: the latency alone
        (100, 1_000, RateLimits(requests_per_minute=10), 2 + 10),  # 100 / 10 rpm
        (100, 600_000, RateLimits(10, 20_000), 2 + 30),  # tokens bind: 600k / 20k tpm = 30
        (5, 1_000, RateLimits(10, 1_000_000), 2 + 0.5),  # 5 / 10 rpm = 0.5 min
    ],
)
def test_interactive_time_follows_the_rate_caps(
    requests: int, tokens: int, rate: RateLimits | None, minutes: float
) -> None:
    got = interactive_time(requests, tokens, rate, timedelta(minutes=2))
    assert got == timedelta(minutes=minutes)


def test_earliest_ignores_missing_deadlines() -> None:
    assert earliest([None, None]) is None
    assert earliest([T0 + timedelta(hours=2), None, T0]) == T0


@given(
    slack=st.integers(min_value=-10_000, max_value=10_000),
    needed=st.integers(min_value=0, max_value=5_000),
    later=st.integers(min_value=0, max_value=5_000),
)
def test_escape_is_monotonic_in_time(slack: int, needed: int, later: int) -> None:
    """Once a batch is due to escape it stays due; before, exactly when slack <= needed."""
    deadline = T0 + timedelta(seconds=slack)
    need = timedelta(seconds=needed)
    now_due = should_escape(deadline, need, T0)
    assert now_due == (slack <= needed)
    if now_due:
        assert should_escape(deadline, need, T0 + timedelta(seconds=later))


@given(
    requests=st.integers(min_value=0, max_value=100_000),
    tokens=st.integers(min_value=0, max_value=10**9),
    more=st.integers(min_value=0, max_value=10_000),
    rpm=st.none() | st.integers(min_value=1, max_value=10_000),
    tpm=st.none() | st.integers(min_value=1, max_value=10**7),
)
def test_more_work_never_needs_less_time(
    requests: int, tokens: int, more: int, rpm: int | None, tpm: int | None
) -> None:
    rate = RateLimits(rpm, tpm)
    small = time_needed(requests, tokens, rate, RULES)
    assert small >= RULES.cancel_time + RULES.replan_time + RULES.interactive_latency
    assert time_needed(requests + more, tokens + more, rate, RULES) >= small

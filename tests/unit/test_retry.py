"""core.retry: capped exponential backoff with full jitter; a server hint wins (spec §3.2)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.core.retry import GiveUp, Retry, RetryPolicy, backoff_ceiling, decide
from planner.errors import (
    AuthFailed,
    NotFound,
    Permanent,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    Transient,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(base_seconds=2.0, cap_seconds=60.0, max_attempts=10)


class MaxRandom(random.Random):
    """Always draws the top of the range, to see the window's upper edge."""

    def uniform(self, a: float, b: float) -> float:
        return b


class MinRandom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [
        (1, 2.0),  # base·2^0
        (2, 4.0),  # base·2^1
        (5, 32.0),  # base·2^4
        (6, 60.0),  # base·2^5 = 64 > cap 60
        (500, 60.0),  # no overflow for absurd attempt numbers
        (0, 2.0),  # attempt numbers below 1 are treated as the first
    ],
)
def test_ceiling_doubles_up_to_the_cap(attempt: int, ceiling: float) -> None:
    assert backoff_ceiling(attempt, POLICY) == ceiling


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    top = decide(Transient("x"), 3, NOW, MaxRandom(), POLICY)
    bottom = decide(Transient("x"), 3, NOW, MinRandom(), POLICY)
    assert top == Retry(NOW + timedelta(seconds=8.0))
    assert bottom == Retry(NOW)


def test_a_hint_wins_even_above_the_cap_and_120_seconds() -> None:
    decision = decide(RateLimited("slow down", retry_after=300.0), 1, NOW, MinRandom(), POLICY)
    assert decision == Retry(NOW + timedelta(seconds=300.0), hinted=True)
    # jitter goes on top: 10% of 300 s at most
    decision = decide(RateLimited("slow down", retry_after=300.0), 1, NOW, MaxRandom(), POLICY)
    assert decision == Retry(NOW + timedelta(seconds=330.0), hinted=True)


def test_a_zero_hint_still_spreads_a_little() -> None:
    decision = decide(RateLimited("x", retry_after=0.0), 1, NOW, MaxRandom(), POLICY)
    assert decision == Retry(NOW + timedelta(seconds=0.5), hinted=True)


def test_a_rate_limit_without_a_hint_backs_off_like_any_transient_error() -> None:
    decision = decide(RateLimited("x"), 2, NOW, MaxRandom(), POLICY)
    assert decision == Retry(NOW + timedelta(seconds=4.0))


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (Permanent("bad request"), "permanent"),
        (NotFound("gone"), "permanent"),
        (AuthFailed("401"), "auth"),
        (QuotaExceeded("daily quota"), "quota"),
        (ProviderError("unclassified"), "permanent"),
    ],
)
def test_errors_a_wait_cannot_fix_give_up_at_once(error: ProviderError, reason: str) -> None:
    assert decide(error, 1, NOW, random.Random(0), POLICY) == GiveUp(reason)


def test_the_attempt_cap_gives_up() -> None:
    assert isinstance(decide(Transient("x"), 9, NOW, random.Random(0), POLICY), Retry)
    assert decide(Transient("x"), 10, NOW, random.Random(0), POLICY) == GiveUp("attempts")
    hinted = RateLimited("x", retry_after=1.0)
    assert decide(hinted, 10, NOW, random.Random(0), POLICY) == GiveUp("attempts")


def test_the_same_seed_gives_the_same_decisions() -> None:
    first = [decide(Transient("x"), n, NOW, random.Random(42), POLICY) for n in range(1, 9)]
    again = [decide(Transient("x"), n, NOW, random.Random(42), POLICY) for n in range(1, 9)]
    assert first == again


def test_retry_delay_is_never_negative() -> None:
    retry = Retry(NOW + timedelta(seconds=3))
    assert retry.delay(NOW) == 3.0
    assert retry.delay(NOW + timedelta(seconds=10)) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_seconds": 0.0},
        {"base_seconds": 10.0, "cap_seconds": 5.0},
        {"max_attempts": 0},
        {"hint_jitter": -0.1},
        {"min_hint_jitter_seconds": -1.0},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


attempts = st.integers(min_value=1, max_value=POLICY.max_attempts - 1)
seeds = st.integers(min_value=0, max_value=2**32)


@given(attempt=attempts, seed=seeds)
def test_property_never_before_now_and_never_past_the_cap(attempt: int, seed: int) -> None:
    decision = decide(Transient("x"), attempt, NOW, random.Random(seed), POLICY)
    assert isinstance(decision, Retry)
    assert NOW <= decision.at <= NOW + timedelta(seconds=POLICY.cap_seconds)
    assert decision.delay(NOW) <= backoff_ceiling(attempt, POLICY)


@given(
    attempt=attempts,
    seed=seeds,
    hint=st.floats(min_value=0.0, max_value=7 * 24 * 3600.0, allow_nan=False),
)
def test_property_a_hint_is_honoured_with_bounded_jitter(
    attempt: int, seed: int, hint: float
) -> None:
    decision = decide(RateLimited("x", retry_after=hint), attempt, NOW, random.Random(seed), POLICY)
    assert isinstance(decision, Retry) and decision.hinted
    spread = max(POLICY.min_hint_jitter_seconds, hint * POLICY.hint_jitter)
    # never earlier than the server asked (a microsecond of datetime rounding aside)
    assert decision.at >= NOW + timedelta(seconds=hint) - timedelta(microseconds=1)
    assert decision.at <= NOW + timedelta(seconds=hint + spread) + timedelta(microseconds=1)


def test_a_negative_hint_is_ignored_for_plain_backoff() -> None:
    decision = decide(RateLimited("x", retry_after=-5.0), 1, NOW, MaxRandom(), POLICY)
    assert decision == Retry(NOW + timedelta(seconds=2.0))

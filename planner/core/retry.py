"""When to try a failed provider call again: capped exponential backoff with full jitter.

Pure (reliability spec §3.2): the error, how many attempts have failed, ``now`` and a random
source go in; a :class:`Retry` at a moment or a :class:`GiveUp` with its reason comes out. The
stages act on it (a batch's ``next_poll_at``, the interactive lane's sleep), so the decision is
testable without a clock or a network and repeatable with a seeded ``random.Random``.

- Without a hint the wait is ``uniform(0, min(cap, base * 2**(attempt - 1)))`` ("full jitter",
  AWS Builders' Library): spreading retries over the whole window is what keeps many clients,
  or replicas, from retrying in lock-step after a shared outage.
- A server hint (``RateLimited.retry_after``, from ``retry-after(-ms)`` or Gemini's
  ``RetryInfo``) wins, even above ``cap`` and above the 120 s at which the OpenAI SDK gives up:
  the server knows when its window reopens, and coming back earlier only earns another 429.
  A little jitter (up to ``hint_jitter`` of the hint, at least ``min_hint_jitter``) is added on
  top, never subtracted, so replicas told the same time do not all return at that instant.
- Errors a wait cannot fix give up at once: ``Permanent``/``NotFound`` (the request is wrong or
  gone), ``AuthFailed`` and ``QuotaExceeded`` (the circuit breaker, not the retry loop, decides
  when to look again). So do errors after ``max_attempts`` failed attempts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from planner.errors import AuthFailed, ProviderError, QuotaExceeded, RateLimited

__all__ = ["GiveUp", "Retry", "RetryPolicy", "backoff_ceiling", "decide"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often to retry. Durations in seconds."""

    base_seconds: float = 5.0
    cap_seconds: float = 900.0  # 15 min: a stage pass later is soon enough for batch work
    max_attempts: int = 8  # failed attempts after which ``decide`` gives up
    hint_jitter: float = 0.1  # fraction of a server hint added at random on top of it
    min_hint_jitter_seconds: float = 0.5  # so a hint of 0 s still spreads replicas a little

    def __post_init__(self) -> None:
        if self.base_seconds <= 0 or self.cap_seconds < self.base_seconds:
            raise ValueError("need 0 < base_seconds <= cap_seconds")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.hint_jitter < 0 or self.min_hint_jitter_seconds < 0:
            raise ValueError("hint jitter cannot be negative")


DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again at ``at`` (never before the ``now`` the decision was made at)."""

    at: datetime
    hinted: bool = False  # the server said when

    def delay(self, now: datetime) -> float:
        """Seconds from ``now`` until ``at`` (0 when already due)."""
        return max(0.0, (self.at - now).total_seconds())


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Do not retry here; ``reason`` is a short, log-friendly word (no error text)."""

    reason: str


def backoff_ceiling(attempt: int, policy: RetryPolicy = DEFAULT_POLICY) -> float:
    """The upper end of the jitter window after ``attempt`` failures: ``min(cap, base·2^(n-1))``.

    The exponent is bounded before the power is taken, so a huge attempt number cannot overflow.
    """
    exponent = min(max(attempt, 1) - 1, 64)
    return min(policy.cap_seconds, policy.base_seconds * 2.0**exponent)


def _give_up_reason(error: ProviderError) -> str | None:
    if isinstance(error, AuthFailed):
        return "auth"
    if isinstance(error, QuotaExceeded):
        return "quota"
    if not error.retryable:
        return "permanent"
    return None


def decide(
    error: ProviderError,
    attempt: int,
    now: datetime,
    rng: random.Random,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Retry | GiveUp:
    """What to do after the ``attempt``-th failed attempt (1-based) ended in ``error``."""
    reason = _give_up_reason(error)
    if reason is not None:
        return GiveUp(reason)
    if attempt >= policy.max_attempts:
        return GiveUp("attempts")
    hint = error.retry_after if isinstance(error, RateLimited) else None
    if hint is not None and hint >= 0:
        spread = max(policy.min_hint_jitter_seconds, hint * policy.hint_jitter)
        return Retry(now + timedelta(seconds=hint + rng.uniform(0.0, spread)), hinted=True)
    return Retry(now + timedelta(seconds=rng.uniform(0.0, backoff_ceiling(attempt, policy))))

"""Deadline escape: when a batch still waiting at the provider must give up on the batch lane.

A batch can sit ``PENDING`` for more than a day and then expire (reliability spec §3.1, §7.3
"stuck PENDING"). Its requests were sent there because their deadline left at least the batch
window; once the time left before the earliest of their deadlines is no more than what it takes
to get them answered another way, waiting is no longer an option: cancel the batch at the
provider and let its unfinished requests be planned again (their deadline is now too close for a
batch, so the policy sends them to the interactive or flex lane).

What "another way" takes, ``needed``: the provider's cancel (OpenAI's ``cancelling`` lasts up to
10 minutes), the wait for the next planning pass, and the interactive lane itself, which a
requests- or tokens-per-minute cap can stretch for a large batch. Pure: ``now`` is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from planner.core.limits import RateLimits


@dataclass(frozen=True, slots=True)
class EscapeRules:
    """How much time the way out is given before a deadline."""

    cancel_time: timedelta = timedelta(minutes=10)  # OpenAI: cancelling -> cancelled
    replan_time: timedelta = timedelta(minutes=15)  # until the next planning pass
    interactive_latency: timedelta = timedelta(minutes=2)  # the slowest single answer


DEFAULT_ESCAPE_RULES = EscapeRules()


def interactive_time(
    requests: int, input_tokens: int, rate: RateLimits | None, latency: timedelta
) -> timedelta:
    """How long the interactive lane needs for ``requests`` under the provider's caps."""
    minutes = 0.0
    if rate is not None and rate.requests_per_minute:
        minutes = max(minutes, requests / rate.requests_per_minute)
    if rate is not None and rate.tokens_per_minute:
        minutes = max(minutes, input_tokens / rate.tokens_per_minute)
    return latency + timedelta(minutes=minutes)


def time_needed(
    requests: int, input_tokens: int, rate: RateLimits | None, rules: EscapeRules
) -> timedelta:
    """Cancel, re-plan and answer interactively: the slack a batch must keep."""
    answer = interactive_time(requests, input_tokens, rate, rules.interactive_latency)
    return rules.cancel_time + rules.replan_time + answer


def earliest(deadlines: Iterable[datetime | None]) -> datetime | None:
    """The first of the given deadlines; ``None`` when none is set."""
    known = [d for d in deadlines if d is not None]
    return min(known) if known else None


def should_escape(deadline: datetime | None, needed: timedelta, now: datetime) -> bool:
    """Whether the slack before ``deadline`` is gone: ``now`` has reached ``deadline - needed``.

    A batch without a deadline never escapes (it waits for the provider, or for expiry).
    """
    return deadline is not None and now >= deadline - needed


ONE_RETRY = time_needed(1, 0, None, DEFAULT_ESCAPE_RULES)
"""The way out for one late request (cancel, re-plan, answer interactively): the retry the
policy adds to a batch's turnaround before it sends a request by batch (``core/policy.py``)."""

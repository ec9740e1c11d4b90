"""The enqueued-token queue: the limit learned from refusals, and what planning may still add.

Both providers cap the input tokens of a model's unfinished batches (pricing spec §3.1-§3.3),
and the documented figures are often wrong for an organisation: OpenAI accepts the create and
then fails the batch with ``token_limit_exceeded``; Gemini answers 429 ``RESOURCE_EXHAUSTED``
"despite usage below limits" (reliability spec §3.1). So the limit is learned:

- a refused batch of ``batch_tokens`` while ``in_flight`` tokens of the same (provider, model)
  were accepted means the queue holds less than ``in_flight + batch_tokens``; we take it to be
  what was in flight, or half the batch when nothing was (it was too big on its own), so
  repeated refusals shrink the batches geometrically until one fits;
- a learned limit only ever lowers the one already learned, and is forgotten after ``ttl`` (a
  tier upgrade, or another client of the same organisation that has finished, lifts it);
- the planner applies ``min(configured, learned)`` both per batch (the packer splits a batch
  that is larger) and to the sum over unfinished batches (``enqueue_budget``), so the requests
  of a refused batch are re-planned only as in-flight batches finish.

Pure: ``now`` is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from planner.core.limits import BatchLimits

TOKEN_LIMIT_CODE = "token_limit_exceeded"
"""The batch-level error code (OpenAI) and the ``reason`` prefix we record for any provider."""

LEARNED_LIMIT_TTL = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class LearnedLimit:
    """Enqueued input tokens a (provider, model) queue was found to hold, and when."""

    tokens: int
    learned_at: datetime


def learned_from_refusal(in_flight: int, batch_tokens: int) -> int:
    """The limit a refused batch teaches (see the module docstring); at least 1 token."""
    if in_flight > 0:
        return in_flight
    return max(1, batch_tokens // 2)


def current(
    learned: LearnedLimit | None, now: datetime, ttl: timedelta = LEARNED_LIMIT_TTL
) -> int | None:
    """The learned limit still in force at ``now``, else ``None``."""
    if learned is None or now - learned.learned_at >= ttl:
        return None
    return learned.tokens


def lowered(
    old: LearnedLimit | None, tokens: int, now: datetime, ttl: timedelta = LEARNED_LIMIT_TTL
) -> int:
    """What to store after a new refusal teaching ``tokens``: never above what is in force."""
    existing = current(old, now, ttl)
    return tokens if existing is None else min(existing, tokens)


def with_learned(limits: BatchLimits, learned: int | None) -> BatchLimits:
    """``limits`` with ``max_enqueued_tokens`` as ``min(configured, learned)``."""
    if learned is None:
        return limits
    configured = limits.max_enqueued_tokens
    tokens = learned if configured is None else min(configured, learned)
    return replace(limits, max_enqueued_tokens=tokens)


def enqueue_budget(limit: int | None, in_flight: int) -> int | None:
    """Input tokens new batches of one (provider, model) may still hold; ``None``: no limit."""
    if limit is None:
        return None
    return max(0, limit - in_flight)


def is_token_limit(text: str | None) -> bool:
    """Whether a batch's recorded reason or error says the enqueued-token queue was full."""
    lowered_text = (text or "").lower()
    return lowered_text.startswith(TOKEN_LIMIT_CODE) or "enqueued token limit" in lowered_text

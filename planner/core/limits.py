"""Per-batch limits the packer must respect, with the provider defaults defined once.

Every figure below is quoted from ``specs/pricing-and-limits.md`` §3 (and the batch specs'
limit sections); the source tag is next to each table. Enqueued-token figures change often and
differ per organisation (spec §3.2/§3.3, D11, D12), so they are defaults an operator overrides
with ``merge_limits``; a model missing from the tables has no enqueued-token default (``None``)
and the provider's "queue full" answer is handled at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from planner.core.model import ProviderKind

MB = 1_000_000  # providers write "200 MB"; decimal megabytes are the safe (smaller) reading
GB = 1_000 * MB

# OpenAI Batch API (OB; openai-batch-api.md §7.1).
OPENAI_MAX_REQUESTS = 50_000
OPENAI_MAX_FILE_BYTES = 200 * MB
OPENAI_MAX_EMBEDDING_INPUTS = 50_000  # summed over all lines of an embeddings batch

# Gemini Batch API (GB, GRL26; gemini-batch-api.md §9). No request count is documented.
GEMINI_MAX_FILE_BYTES = 2 * GB
GEMINI_INLINE_CALL_BYTES = 20 * MB  # the whole create call must stay under this
GEMINI_INLINE_ENVELOPE_BYTES = 1 * MB  # room kept for the create call's JSON around the lines
GEMINI_MAX_CONCURRENT_BATCHES = 100  # per project (GRL26); core/admission.py
GEMINI_MAX_FILE_STORAGE_BYTES = 20 * GB  # Files API storage per project (GRL26)

# Gemini "Batch enqueued tokens", Tier 1..3 (GRL26, early 2026; embedding row: D11).
GEMINI_ENQUEUED_TOKENS: Mapping[str, tuple[int, int, int]] = {
    "gemini-3-pro-preview": (50_000_000, 500_000_000, 1_000_000_000),  # D12: 5M in one copy
    "gemini-3-flash-preview": (3_000_000, 400_000_000, 500_000_000),
    "gemini-2.5-pro": (5_000_000, 500_000_000, 1_000_000_000),
    "gemini-2.5-flash": (3_000_000, 400_000_000, 1_000_000_000),
    "gemini-2.5-flash-lite": (10_000_000, 500_000_000, 1_000_000_000),
    "gemini-2.0-flash": (10_000_000, 1_000_000_000, 5_000_000_000),
    "gemini-2.0-flash-lite": (10_000_000, 1_000_000_000, 5_000_000_000),
    "gemini-3-pro-image-preview": (2_000_000, 270_000_000, 1_000_000_000),
    "gemini-embedding-001": (500_000, 5_000_000, 10_000_000),
}

# OpenAI batch queue limit (enqueued input tokens), Tier 1..5 (OM model pages, 2026; §3.3).
# None = a tier the source does not give. The separate gpt-4.1 / gpt-4.1-mini queues for
# prompts above 128k tokens are not modelled.
OPENAI_ENQUEUED_TOKENS: Mapping[str, tuple[int | None, ...]] = {
    "gpt-4o": (90_000, 1_350_000, 50_000_000, 200_000_000, 5_000_000_000),
    "gpt-4o-mini": (2_000_000, 20_000_000, 40_000_000, 1_000_000_000, 15_000_000_000),
    "gpt-4.1": (90_000, 1_350_000, 50_000_000, 200_000_000, 5_000_000_000),
    "gpt-4.1-mini": (2_000_000, 20_000_000, 40_000_000, 1_000_000_000, 15_000_000_000),
    "gpt-5-mini": (5_000_000, 20_000_000, 40_000_000, 1_000_000_000, 15_000_000_000),
    "gpt-5-nano": (2_000_000, 20_000_000, 40_000_000, 1_000_000_000, 15_000_000_000),
    "o4-mini": (1_000_000, 2_000_000, 40_000_000, 1_000_000_000, 15_000_000_000),
    "text-embedding-3-large": (3_000_000, None, None, None, None),  # Nov 2024 forum quote
}

_TIERS = {ProviderKind.OPENAI: 5, ProviderKind.GEMINI: 3}


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """What one batch may hold; ``None`` means no limit. Bytes count whole JSONL lines."""

    max_requests: int | None = None
    max_bytes: int | None = None
    max_enqueued_tokens: int | None = None
    max_embedding_inputs: int | None = None


def _check_tier(provider: ProviderKind, tier: int) -> None:
    top = _TIERS[provider]
    if not 1 <= tier <= top:
        raise ValueError(f"{provider.value} usage tier must be 1..{top}, got {tier}")


def _openai(model: str, tier: int) -> BatchLimits:
    tokens = OPENAI_ENQUEUED_TOKENS.get(model)
    return BatchLimits(
        max_requests=OPENAI_MAX_REQUESTS,
        max_bytes=OPENAI_MAX_FILE_BYTES,
        max_enqueued_tokens=None if tokens is None else tokens[tier - 1],
        max_embedding_inputs=OPENAI_MAX_EMBEDDING_INPUTS,
    )


def _gemini(model: str, tier: int, inline: bool) -> BatchLimits:
    tokens = GEMINI_ENQUEUED_TOKENS.get(model.removeprefix("models/"))
    inline_bytes = GEMINI_INLINE_CALL_BYTES - GEMINI_INLINE_ENVELOPE_BYTES
    return BatchLimits(
        max_bytes=inline_bytes if inline else GEMINI_MAX_FILE_BYTES,
        max_enqueued_tokens=None if tokens is None else tokens[tier - 1],
    )


def default_limits(
    provider: ProviderKind, model: str, *, tier: int = 1, inline: bool = False
) -> BatchLimits:
    """The documented limits of one provider family for ``model`` at a usage ``tier``.

    ``inline`` (Gemini only) packs for an inline create call instead of an uploaded file.
    """
    _check_tier(provider, tier)
    if provider is ProviderKind.OPENAI:
        return _openai(model, tier)
    return _gemini(model, tier, inline)


_LIMIT_NAMES = frozenset(f.name for f in fields(BatchLimits))


def _limit_value(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"limits.{name}: expected a positive integer or null, got {value!r}")
    return value


def merge_limits(base: BatchLimits, override: Mapping[str, int | None]) -> BatchLimits:
    """``base`` with the keys given in ``override`` replaced; a ``None`` value lifts a limit."""
    for name in override:
        if name not in _LIMIT_NAMES:
            raise ValueError(
                f"limits.{name}: unknown limit; expected one of {sorted(_LIMIT_NAMES)}"
            )
    changes = {name: _limit_value(name, value) for name, value in override.items()}
    return replace(base, **changes)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Client-side caps on the interactive lane of one provider; ``None`` means no cap."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

"""Provider batch limits (spec §3) and operator overrides."""

from __future__ import annotations

import pytest

from planner.core.limits import BatchLimits, default_limits, merge_limits
from planner.core.model import ProviderKind

G, OA = ProviderKind.GEMINI, ProviderKind.OPENAI


@pytest.mark.parametrize(
    ("provider", "model", "tier", "inline", "expected"),
    [
        # OpenAI: 50,000 requests, 200 MB file, 50,000 embedding inputs; queue limit by tier
        (OA, "gpt-4o", 1, False, BatchLimits(50_000, 200_000_000, 90_000, 50_000)),
        (OA, "gpt-4o", 5, False, BatchLimits(50_000, 200_000_000, 5_000_000_000, 50_000)),
        (OA, "gpt-5-mini", 2, False, BatchLimits(50_000, 200_000_000, 20_000_000, 50_000)),
        (
            OA,
            "text-embedding-3-large",
            1,
            False,
            BatchLimits(50_000, 200_000_000, 3_000_000, 50_000),
        ),
        # a tier the source does not give, and a model with no published figure: no limit
        (OA, "text-embedding-3-large", 2, False, BatchLimits(50_000, 200_000_000, None, 50_000)),
        (OA, "gpt-5", 1, False, BatchLimits(50_000, 200_000_000, None, 50_000)),
        # Gemini: 2 GB file, no request count; inline: 20 MB call less 1 MB envelope = 19 MB
        (G, "gemini-2.5-flash", 1, False, BatchLimits(None, 2_000_000_000, 3_000_000, None)),
        (G, "gemini-2.5-flash", 3, True, BatchLimits(None, 19_000_000, 1_000_000_000, None)),
        (G, "models/gemini-2.5-pro", 1, False, BatchLimits(None, 2_000_000_000, 5_000_000, None)),
        (G, "gemini-embedding-001", 2, False, BatchLimits(None, 2_000_000_000, 5_000_000, None)),
        (G, "gemini-3.8-flash", 1, False, BatchLimits(None, 2_000_000_000, None, None)),
    ],
)
def test_default_limits(
    provider: ProviderKind, model: str, tier: int, inline: bool, expected: BatchLimits
) -> None:
    assert default_limits(provider, model, tier=tier, inline=inline) == expected


@pytest.mark.parametrize(("provider", "tier"), [(OA, 0), (OA, 6), (G, 4)])
def test_bad_tier(provider: ProviderKind, tier: int) -> None:
    with pytest.raises(ValueError, match="usage tier"):
        default_limits(provider, "gpt-4o", tier=tier)


def test_merge_limits() -> None:
    base = BatchLimits(50_000, 200_000_000, 90_000, 50_000)
    merged = merge_limits(base, {"max_requests": 1000, "max_enqueued_tokens": None})
    assert merged == BatchLimits(1000, 200_000_000, None, 50_000)
    assert merge_limits(base, {}) == base


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"max_files": 1}, "limits.max_files: unknown limit"),
        ({"max_bytes": 0}, "limits.max_bytes: expected a positive integer"),
        ({"max_bytes": True}, "limits.max_bytes: expected a positive integer"),
        ({"max_bytes": "1MB"}, "limits.max_bytes: expected a positive integer"),
    ],
)
def test_merge_limits_rejects(override: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        merge_limits(BatchLimits(), override)  # type: ignore[arg-type]

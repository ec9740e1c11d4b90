"""Admission against account limits: open batch jobs and stored bytes per provider."""

from __future__ import annotations

from planner.core.admission import AccountLimits, InUse, admit, default_account_limits
from planner.core.limits import GB
from planner.core.model import ProviderKind

LIMITS = {
    "gemini": AccountLimits(max_concurrent_batches=3, max_file_storage_bytes=1000),
    "openai": AccountLimits(),
}


def _admit(
    batches: list[tuple[str, int]], in_use: dict[str, InUse]
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    return admit(batches, lambda b: b[0], lambda b: b[1], LIMITS.__getitem__, in_use)


def test_documented_defaults() -> None:
    assert default_account_limits(ProviderKind.GEMINI) == AccountLimits(100, 20 * GB)
    assert default_account_limits(ProviderKind.OPENAI) == AccountLimits(None, None)


def test_jobs_in_flight_count_and_order_is_kept() -> None:
    batches = [("gemini", 100), ("openai", 10**9), ("gemini", 100), ("gemini", 100)]
    # two gemini jobs already open: one more fits (3), the next two wait; openai is unlimited
    admitted, waiting = _admit(batches, {"gemini": InUse(2, 0)})
    assert admitted == [("gemini", 100), ("openai", 10**9)]
    assert waiting == [("gemini", 100), ("gemini", 100)]


def test_storage_bytes_and_no_overtaking() -> None:
    # 700 of 1000 bytes stored: the 400-byte batch waits, and so does the 100-byte one after it
    batches = [("gemini", 400), ("gemini", 100)]
    admitted, waiting = _admit(batches, {"gemini": InUse(0, 700)})
    assert admitted == [] and waiting == batches
    admitted, waiting = _admit(batches, {})  # nothing stored: 500 fits
    assert admitted == batches and waiting == []

"""Admission against a provider's account-wide limits: how many batch jobs may be open at once,
and how many bytes of input files may be stored.

Gemini allows 100 concurrent batch jobs and 20 GB of files per project (pricing spec §3.1,
GRL26); OpenAI documents neither (both ``None``: no limit), and an operator may set either
under ``limits.<provider>``. Batches count from the moment they are planned (their intent is
the reservation) until the provider reports them finished (the release): the store's
unfinished batches are what is in use, so a restart or a second replica sees the same.

The planner admits new batches in the order it packed them (earliest deadline first) while
they fit; the rest wait, their requests queued, for a later pass. Pure: counts are parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from planner.core.limits import GEMINI_MAX_CONCURRENT_BATCHES, GEMINI_MAX_FILE_STORAGE_BYTES
from planner.core.model import ProviderKind


@dataclass(frozen=True, slots=True)
class AccountLimits:
    """One provider account's limits; ``None``: no limit."""

    max_concurrent_batches: int | None = None
    max_file_storage_bytes: int | None = None


def default_account_limits(provider: ProviderKind) -> AccountLimits:
    """The documented figures: Gemini's 100 jobs and 20 GB per project; none for OpenAI."""
    if provider is ProviderKind.GEMINI:
        return AccountLimits(GEMINI_MAX_CONCURRENT_BATCHES, GEMINI_MAX_FILE_STORAGE_BYTES)
    return AccountLimits()


@dataclass(frozen=True, slots=True)
class InUse:
    """What a provider's unfinished batches hold: jobs and input bytes."""

    batches: int = 0
    bytes: int = 0


B = TypeVar("B")


def admit(
    batches: Iterable[B],
    provider_of: Callable[[B], str],
    bytes_of: Callable[[B], int],
    limits: Callable[[str], AccountLimits],
    in_use: Mapping[str, InUse],
) -> tuple[list[B], list[B]]:
    """Split ``batches`` (in priority order) into those admitted now and those that wait.

    Once one batch of a provider waits, every later one of that provider waits too, so the
    order is kept (an urgent batch is never overtaken by a smaller, later one)."""
    used = dict(in_use)
    full: set[str] = set()
    admitted: list[B] = []
    waiting: list[B] = []
    for batch in batches:
        provider = provider_of(batch)
        limit = limits(provider)
        now = used.get(provider, InUse())
        after = InUse(now.batches + 1, now.bytes + bytes_of(batch))
        over_jobs = limit.max_concurrent_batches is not None and (
            after.batches > limit.max_concurrent_batches
        )
        over_bytes = limit.max_file_storage_bytes is not None and (
            after.bytes > limit.max_file_storage_bytes
        )
        if provider in full or over_jobs or over_bytes:
            full.add(provider)
            waiting.append(batch)
            continue
        used[provider] = after
        admitted.append(batch)
    return admitted, waiting

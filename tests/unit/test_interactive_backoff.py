"""The interactive lane's answer to 429s and outages, one call at a time (no store, no network).

``_call`` only needs the context's providers and guard, so a stand-in context is enough.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from planner.core.model import Endpoint, Lane, Request, Usage
from planner.core.states import RequestState
from planner.errors import AuthFailed, Permanent, ProviderError, RateLimited, Transient
from planner.pipeline.guard import ProviderGuard
from planner.pipeline.interactive import MAX_RETRY_AFTER, ProviderGates, RateGate, _call
from planner.providers.base import BatchLine, LineResult
from planner.store.requests import StoredRequest

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OK = LineResult(key="k1", ok=True, response={}, usage=Usage(1, 1))


@dataclass
class Scripted:
    """Raises the scripted errors in order, then answers."""

    errors: list[ProviderError]
    calls: int = 0

    def call_interactive(self, line: BatchLine, *, flex: bool) -> LineResult:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return OK


@dataclass
class Ctx:
    providers: dict[str, Any]
    guard: ProviderGuard = field(default_factory=lambda: ProviderGuard(rng=random.Random(3)))


def stored() -> StoredRequest:
    request = Request("src", "k1", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, {"messages": []}, NOW)
    return StoredRequest(
        1, request, RequestState.INTERACTIVE, 1, "openai", Lane.INTERACTIVE, None, None, None
    )


def run(ctx: Ctx) -> tuple[LineResult | None, list[float]]:
    slept: list[float] = []
    gates = {
        "openai": ProviderGates(
            RateGate(None, slept.append, lambda: 0.0), RateGate(None, slept.append, lambda: 0.0)
        )
    }
    return _call(ctx, stored(), gates, slept.append, NOW), slept  # type: ignore[arg-type]


def test_a_short_hint_is_slept_through_with_a_little_jitter() -> None:
    provider = Scripted([RateLimited("429", retry_after=2.0)])
    answer, slept = run(Ctx({"openai": provider}))
    assert answer == OK and provider.calls == 2
    assert len(slept) == 1 and 2.0 <= slept[0] <= 2.5


def test_without_a_hint_the_wait_grows_with_jitter() -> None:
    provider = Scripted([RateLimited("429"), RateLimited("429")])
    answer, slept = run(Ctx({"openai": provider}))
    assert answer == OK and provider.calls == 3
    assert 0 <= slept[0] <= 1.0 and 0 <= slept[1] <= 2.0  # full jitter under 1 s, then 2 s


def test_rate_limits_give_up_after_a_few_tries_and_keep_the_request() -> None:
    provider = Scripted([RateLimited("429", retry_after=0.0) for _ in range(5)])
    answer, slept = run(Ctx({"openai": provider}))
    assert answer is None and provider.calls == 3 and len(slept) == 2


def test_a_long_hint_holds_the_provider_instead_of_sleeping() -> None:
    provider = Scripted([RateLimited("429", retry_after=MAX_RETRY_AFTER + 60)])
    ctx = Ctx({"openai": provider})
    answer, slept = run(ctx)
    assert answer is None and slept == [] and provider.calls == 1
    assert ctx.guard.held("openai", NOW + timedelta(seconds=MAX_RETRY_AFTER + 59))
    # the next request to the same provider in this pass is not even sent
    answer, _ = run(ctx)
    assert answer is None and provider.calls == 1


@pytest.mark.parametrize("error", [AuthFailed("401"), Transient("503")])
def test_outages_keep_the_request_in_its_lane(error: ProviderError) -> None:
    provider = Scripted([error])
    ctx = Ctx({"openai": provider})
    answer, _ = run(ctx)
    assert answer is None  # not dead-lettered: the key, not the request, is at fault
    assert ctx.guard.is_open("openai") is isinstance(error, AuthFailed)


def test_an_open_circuit_sends_nothing() -> None:
    provider = Scripted([])
    ctx = Ctx({"openai": provider})
    ctx.guard.record("openai", NOW, AuthFailed("401"))
    answer, _ = run(ctx)
    assert answer is None and provider.calls == 0


def test_a_request_level_error_is_the_requests_answer() -> None:
    answer, _ = run(Ctx({"openai": Scripted([Permanent("400 bad")])}))
    assert answer is not None and not answer.ok and not answer.retryable
    assert answer.error_code == "Permanent"

"""pipeline.guard: the per-provider breakers between stage runs, the probe, and the log lines."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from planner.core.breaker import BreakerPolicy, CircuitState, Signal
from planner.core.retry import Retry
from planner.core.states import BatchState
from planner.errors import (
    AuthFailed,
    NotFound,
    Permanent,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    Transient,
)
from planner.pipeline.guard import ProviderGuard, signal_of
from planner.providers.base import RemoteBatch

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class ProbeTarget:
    """Stands in for a provider: only ``list_ours`` (the probe) is ever called by the guard."""

    def __init__(self, error: ProviderError | None = None, batches: int = 0) -> None:
        self.error = error
        self.batches = batches
        self.probes = 0
        self.read = 0

    def list_ours(self, since: datetime | None = None) -> Iterator[RemoteBatch]:
        self.probes += 1
        if self.error is not None:
            raise self.error
        for i in range(self.batches):
            self.read += 1
            yield RemoteBatch(f"batches/{i}", f"plb_{i}", BatchState.RUNNING, "running")


def guard() -> ProviderGuard:
    return ProviderGuard(rng=random.Random(0), breaker_policy=BreakerPolicy(base_open_seconds=60))


@pytest.mark.parametrize(
    ("error", "signal"),
    [
        (None, Signal.ANSWERED),
        (RateLimited("429", retry_after=3), Signal.ANSWERED),  # backoff, not the breaker
        (Permanent("400"), Signal.ANSWERED),
        (NotFound("404"), Signal.ANSWERED),
        (Transient("503"), Signal.FAILURE),
        (AuthFailed("401"), Signal.TRIP),
        (QuotaExceeded("daily"), Signal.TRIP),
    ],
)
def test_what_each_outcome_tells_the_breaker(error: ProviderError | None, signal: Signal) -> None:
    assert signal_of(error) is signal


def test_an_auth_error_opens_only_that_providers_circuit_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    g = guard()
    target = ProbeTarget()
    caplog.set_level(logging.INFO, logger="planner.pipeline.guard")
    g.record("openai", T0, AuthFailed("openai batch create failed: HTTP 401 sk-secret"))
    assert g.is_open("openai") and not g.allows("openai")
    assert g.admit("gemini", target, T0) and not g.is_open("gemini")
    assert not g.admit("openai", target, T0 + timedelta(seconds=59))
    assert target.probes == 0  # closed providers are never probed; open ones not before time
    assert g.states({"openai": 1, "gemini": 2}) == {"openai": True, "gemini": False}
    opened = [r for r in caplog.records if getattr(r, "event", None) == "circuit_opened"]
    assert len(opened) == 1
    assert opened[0].provider == "openai" and opened[0].reason == "auth"  # type: ignore[attr-defined]
    assert "sk-secret" not in caplog.text  # the error text never reaches the log


def test_after_the_backoff_one_probe_decides(caplog: pytest.LogCaptureFixture) -> None:
    g = guard()
    caplog.set_level(logging.INFO, logger="planner.pipeline.guard")
    g.record("openai", T0, AuthFailed("401"))
    still_bad = ProbeTarget(AuthFailed("401"))
    assert not g.admit("openai", still_bad, T0 + timedelta(seconds=60))
    assert still_bad.probes == 1 and g.state("openai") is CircuitState.OPEN
    # open again for twice as long
    assert not g.admit("openai", still_bad, T0 + timedelta(seconds=60 + 119))
    assert still_bad.probes == 1
    healthy = ProbeTarget(batches=5)
    assert g.admit("openai", healthy, T0 + timedelta(seconds=60 + 120))
    assert healthy.probes == 1 and g.state("openai") is CircuitState.CLOSED
    assert healthy.read == 1  # a cheap probe: one item is enough
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events == [
        "circuit_opened",
        "circuit_half_open",
        "circuit_opened",
        "circuit_half_open",
        "circuit_closed",
    ]


def test_a_terminal_quota_error_opens_it_at_once(caplog: pytest.LogCaptureFixture) -> None:
    g = guard()
    caplog.set_level(logging.INFO, logger="planner.pipeline.guard")
    g.record("gemini", T0, QuotaExceeded("per-day quota"))
    assert g.is_open("gemini")
    assert [getattr(r, "reason", None) for r in caplog.records] == ["quota"]


def test_five_transient_failures_in_a_row_open_it() -> None:
    g = guard()
    for _ in range(4):
        g.record("gemini", T0, Transient("503"))
    assert g.allows("gemini")
    g.record("gemini", T0, Transient("503"))
    assert not g.allows("gemini")


def test_a_rate_limit_in_between_breaks_the_run() -> None:
    """A 429 is an answer: the provider is up and takes the key, so the run starts over."""
    g = guard()
    for _ in range(4):
        g.record("gemini", T0, Transient("503"))
    g.record("gemini", T0, RateLimited("429"))
    for _ in range(4):
        g.record("gemini", T0, Transient("503"))
    assert g.allows("gemini")


def test_retry_uses_the_guards_seeded_random_source() -> None:
    a, b = guard(), guard()
    decisions_a = [a.retry(Transient("x"), n, T0) for n in range(1, 5)]
    decisions_b = [b.retry(Transient("x"), n, T0) for n in range(1, 5)]
    assert decisions_a == decisions_b
    assert all(isinstance(d, Retry) and d.at >= T0 for d in decisions_a)


def test_failure_counts_and_holds() -> None:
    g = guard()
    assert [g.failed_attempt("plb_1") for _ in range(3)] == [1, 2, 3]
    g.forget("plb_1")
    assert g.failed_attempt("plb_1") == 1
    g.hold("openai", T0 + timedelta(seconds=300))
    g.hold("openai", T0 + timedelta(seconds=100))  # a shorter hold never shortens a longer one
    assert g.held("openai", T0 + timedelta(seconds=299))
    assert not g.held("openai", T0 + timedelta(seconds=300))
    assert not g.held("openai", T0)  # expired holds are dropped
    assert not g.held("gemini", T0)


def test_many_threads_reporting_at_once_lose_no_count() -> None:
    g = ProviderGuard(breaker_policy=BreakerPolicy(threshold=10_000))
    barrier = threading.Barrier(8)

    def report() -> None:
        barrier.wait()
        for _ in range(500):
            g.record("openai", T0, Transient("503"))

    threads = [threading.Thread(target=report) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    breaker: Any = g._breakers["openai"]
    assert breaker.failures == 4000

"""A circuit breaker for one provider: closed, open, half-open (reliability spec §3.3).

Pure and immutable: every method takes ``now`` and returns the next :class:`Breaker` together
with the :class:`Transition` it made, if any, so the caller logs and exports it and tests need
no clock. The holder that keeps one breaker per provider across stage runs is
``pipeline/guard.py``.

Why these inputs:

- ``FAILURE`` (5xx, timeouts, connection resets, unreadable answers): one can be bad luck, so
  the breaker opens only after ``threshold`` in a row; any answer in between resets the count.
- ``TRIP`` (401/403, a daily or credit quota): retrying cannot help before a person or the
  calendar acts, and every retry against a revoked key is noise in the provider's abuse
  signals, so the breaker opens at once.
- ``ANSWERED`` (a success, and also a 4xx about the request or a 429): the provider is up and
  accepts the key. A 429 is handled by backoff (``core/retry.py``), not by the breaker.
- Batch outcomes (``failed``, ``expired``) are never inputs: they are data about one job, not
  about whether the provider is reachable.

While open, callers skip the provider. Once ``retry_at`` has passed, :meth:`Breaker.allow`
moves to half-open and lets exactly one cheap probe through (the guard lists batches, a GET,
never a create); its outcome closes the breaker or opens it again for twice as long, up to
``max_open_seconds``. A probe that never reports back (the process was busy elsewhere) is
assumed lost after ``probe_timeout_seconds`` and another is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = ["Breaker", "BreakerPolicy", "CircuitState", "Signal", "Transition"]


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Signal(StrEnum):
    """What one provider call said about the provider's availability."""

    ANSWERED = "answered"
    FAILURE = "failure"
    TRIP = "trip"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """Durations in seconds."""

    threshold: int = 5  # consecutive failures that open a closed breaker
    base_open_seconds: float = 60.0  # the first time open; doubles with each failed probe
    max_open_seconds: float = 900.0  # 15 min cap (spec §3.3)
    probe_timeout_seconds: float = 300.0  # a probe unanswered this long is assumed lost

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1")
        if not 0 < self.base_open_seconds <= self.max_open_seconds:
            raise ValueError("need 0 < base_open_seconds <= max_open_seconds")
        if self.probe_timeout_seconds <= 0:
            raise ValueError("probe_timeout_seconds must be positive")

    def open_for(self, trips: int) -> timedelta:
        """How long the breaker stays open after its ``trips``-th consecutive opening."""
        exponent = min(max(trips, 1) - 1, 32)
        return timedelta(seconds=min(self.max_open_seconds, self.base_open_seconds * 2**exponent))


DEFAULT_BREAKER_POLICY = BreakerPolicy()


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change, as a value to log and export: ``old -> new`` and why."""

    old: CircuitState
    new: CircuitState
    reason: str  # a short word: "failures", "auth", "quota", "probe_ok", "probe_failed", ...
    at: datetime
    retry_at: datetime | None = None  # when an opened breaker will let a probe through


@dataclass(frozen=True, slots=True)
class Breaker:
    """The breaker of one provider. Start with ``Breaker()``: closed, no failures."""

    policy: BreakerPolicy = DEFAULT_BREAKER_POLICY
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0  # consecutive FAILUREs while closed
    trips: int = 0  # consecutive openings without a successful probe in between
    retry_at: datetime | None = None  # open: when to go half-open
    probe_started: datetime | None = None  # half-open: when the probe was let through

    @property
    def is_open(self) -> bool:
        """Open or half-open: the provider is not (yet) trusted; the gauge shows 1."""
        return self.state is not CircuitState.CLOSED

    def allow(self, now: datetime) -> tuple[Breaker, bool, Transition | None]:
        """May a call go to the provider now? In half-open, only the probe may (``True`` once).

        The caller that gets ``True`` from an open or half-open breaker *is* the probe and must
        report its outcome with :meth:`record`.
        """
        if self.state is CircuitState.CLOSED:
            return self, True, None
        if self.state is CircuitState.OPEN:
            assert self.retry_at is not None
            if now < self.retry_at:
                return self, False, None
            half = replace(self, state=CircuitState.HALF_OPEN, retry_at=None, probe_started=now)
            return half, True, Transition(self.state, half.state, "backoff_over", now)
        assert self.probe_started is not None
        if now - self.probe_started >= timedelta(seconds=self.policy.probe_timeout_seconds):
            return replace(self, probe_started=now), True, None  # the last probe was lost
        return self, False, None

    def record(
        self, signal: Signal, now: datetime, reason: str = ""
    ) -> tuple[Breaker, Transition | None]:
        """Take one call's outcome into account; ``reason`` names the error class for the log."""
        if signal is Signal.ANSWERED:
            if self.state is CircuitState.CLOSED:
                return (replace(self, failures=0) if self.failures else self), None
            # half-open: the probe answered. Open: a call that started before the breaker
            # opened came back fine, which proves the same thing a probe would.
            reason = "probe_ok" if self.state is CircuitState.HALF_OPEN else "answered"
            closed = Breaker(self.policy)
            return closed, Transition(self.state, closed.state, reason, now)
        if self.state is CircuitState.HALF_OPEN:
            return self._open(now, "probe_failed" if not reason else f"probe_{reason}")
        if self.state is CircuitState.OPEN:
            return self, None  # a straggler from before the breaker opened
        if signal is Signal.TRIP:
            return self._open(now, reason or "trip")
        failures = self.failures + 1
        if failures >= self.policy.threshold:
            return self._open(now, "failures")
        return replace(self, failures=failures), None

    def _open(self, now: datetime, reason: str) -> tuple[Breaker, Transition]:
        trips = self.trips + 1
        opened = Breaker(
            self.policy,
            CircuitState.OPEN,
            failures=0,
            trips=trips,
            retry_at=now + self.policy.open_for(trips),
        )
        return opened, Transition(self.state, opened.state, reason, now, opened.retry_at)

"""The provider guard: one circuit breaker per provider, kept between stage runs.

The decisions are pure (``core/breaker.py``, ``core/retry.py``); this holder adds what they
cannot have: memory across stage runs (it lives in ``StageContext`` and is carried over on a
SIGHUP reload), a lock (the interactive lane reports from a thread pool), the probe call made
when an open breaker's backoff is over, the shared random source for retry jitter, and a log
line for every transition (``circuit_opened`` / ``circuit_half_open`` / ``circuit_closed``,
with the provider's name and the error class, never an error text that could hold a secret).

It also remembers, per provider, until when a rate limit asked the interactive lane to stay
away (``hold``), and how many polls of a batch failed in a row (``failed_attempt``), which the
store does not record; both are hints that may be lost on restart without harm.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from planner.core.breaker import (
    DEFAULT_BREAKER_POLICY,
    Breaker,
    BreakerPolicy,
    CircuitState,
    Signal,
    Transition,
)
from planner.core.retry import DEFAULT_POLICY, GiveUp, Retry, RetryPolicy, decide
from planner.errors import AuthFailed, ProviderError, QuotaExceeded, RateLimited
from planner.providers.base import RemoteBatch

_log = logging.getLogger(__name__)

_EVENTS = {
    CircuitState.OPEN: "circuit_opened",
    CircuitState.HALF_OPEN: "circuit_half_open",
    CircuitState.CLOSED: "circuit_closed",
}


class Probed(Protocol):
    """What the probe needs of a provider: its batch list, read only up to the first batch of
    ours (one GET when the first page holds one; never a create)."""

    def list_ours(self, since: datetime | None = None) -> Iterator[RemoteBatch]: ...


def signal_of(error: ProviderError | None) -> Signal:
    """What a call's outcome says about availability (``core/breaker.py`` explains why)."""
    if error is None or isinstance(error, RateLimited):
        return Signal.ANSWERED
    if isinstance(error, AuthFailed | QuotaExceeded):
        return Signal.TRIP
    if error.retryable:
        return Signal.FAILURE
    return Signal.ANSWERED  # Permanent / NotFound: the provider answered about our request


@dataclass
class ProviderGuard:
    """Thread-safe: every method may be called from the interactive lane's pool."""

    rng: random.Random = field(default_factory=random.Random)
    breaker_policy: BreakerPolicy = DEFAULT_BREAKER_POLICY
    retry_policy: RetryPolicy = DEFAULT_POLICY
    _breakers: dict[str, Breaker] = field(default_factory=dict, init=False, repr=False)
    _holds: dict[str, datetime] = field(default_factory=dict, init=False, repr=False)
    _poll_failures: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _observers: list[Callable[[str, ProviderError | None], None]] = field(
        default_factory=list, init=False, repr=False
    )

    def observe(self, observer: Callable[[str, ProviderError | None], None]) -> None:
        """Also tell ``observer`` every reported outcome (the daemon counts calls and errors
        in ``planner_provider_calls_total`` / ``planner_provider_errors_total``)."""
        with self._lock:
            self._observers.append(observer)

    # -- the breaker ------------------------------------------------------------------------
    def state(self, name: str) -> CircuitState:
        with self._lock:
            return self._breaker(name).state

    def is_open(self, name: str) -> bool:
        """Open or half-open (what ``planner_circuit_open`` shows)."""
        with self._lock:
            return self._breaker(name).is_open

    def states(self, names: Mapping[str, object] | None = None) -> dict[str, bool]:
        """``{provider: is_open}`` for ``names`` (default: every provider seen so far)."""
        with self._lock:
            keys = list(names) if names is not None else list(self._breakers)
            return {name: self._breaker(name).is_open for name in keys}

    def allows(self, name: str) -> bool:
        """Closed: calls may go. Used between calls within a stage; never starts a probe."""
        with self._lock:
            return self._breaker(name).state is CircuitState.CLOSED

    def admit(self, name: str, provider: Probed, now: datetime) -> bool:
        """May this stage use ``provider`` at all? Closed: yes. Open with its backoff over: one
        cheap probe (a batch list read up to its first batch of ours, never a create) decides,
        and ``True`` when it closed the breaker. Otherwise no: the provider's work waits,
        untouched."""
        with self._lock:
            breaker, allowed, transition = self._breaker(name).allow(now)
            self._set(name, breaker, transition)
            if not allowed or breaker.state is CircuitState.CLOSED:
                return allowed
        try:
            for _ in provider.list_ours():  # stops at the first batch of ours it sees
                break
        except ProviderError as exc:
            self.record(name, now, exc)
            return False
        self.record(name, now)
        return self.allows(name)

    def record(self, name: str, now: datetime, error: ProviderError | None = None) -> None:
        """Report one call's outcome (``error=None``: it succeeded)."""
        with self._lock:
            breaker, transition = self._breaker(name).record(signal_of(error), now, _reason(error))
            self._set(name, breaker, transition)
            observers = list(self._observers)
        for observer in observers:
            observer(name, error)

    # -- retries ----------------------------------------------------------------------------
    def retry(
        self,
        error: ProviderError,
        attempt: int,
        now: datetime,
        policy: RetryPolicy | None = None,
    ) -> Retry | GiveUp:
        """``core.retry.decide`` with the guard's random source (a lock keeps draws ordered)."""
        with self._lock:
            return decide(error, attempt, now, self.rng, policy or self.retry_policy)

    def failed_attempt(self, key: str) -> int:
        """Count one more consecutive failure of ``key`` (e.g. polling a batch); returns it."""
        with self._lock:
            count = self._poll_failures.get(key, 0) + 1
            self._poll_failures[key] = count
            return count

    def forget(self, key: str) -> None:
        """``key`` succeeded: its failure count starts over."""
        with self._lock:
            self._poll_failures.pop(key, None)

    def hold(self, name: str, until: datetime) -> None:
        """A rate limit asked us to leave ``name``'s interactive API alone until ``until``."""
        with self._lock:
            self._holds[name] = max(until, self._holds.get(name, until))

    def held(self, name: str, now: datetime) -> bool:
        with self._lock:
            until = self._holds.get(name)
            if until is not None and until <= now:
                del self._holds[name]
                return False
            return until is not None

    # -- internals --------------------------------------------------------------------------
    def _breaker(self, name: str) -> Breaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = Breaker(self.breaker_policy)
        return breaker

    def _set(self, name: str, breaker: Breaker, transition: Transition | None) -> None:
        self._breakers[name] = breaker
        if transition is None:
            return
        level = logging.WARNING if transition.new is CircuitState.OPEN else logging.INFO
        _log.log(
            level,
            "circuit to %s %s -> %s (%s)",
            name,
            transition.old.value,
            transition.new.value,
            transition.reason,
            extra={
                "event": _EVENTS[transition.new],
                "provider": name,
                "reason": transition.reason,
                "retry_at": transition.retry_at.isoformat() if transition.retry_at else None,
            },
        )


def _reason(error: ProviderError | None) -> str:
    if error is None:
        return ""
    if isinstance(error, AuthFailed):
        return "auth"
    if isinstance(error, QuotaExceeded):
        return "quota"
    return type(error).__name__.lower()

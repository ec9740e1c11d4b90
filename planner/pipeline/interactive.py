"""The interactive executor: requests the policy sent to the synchronous API (standard or flex).

Calls run with bounded concurrency (a thread pool of ``interactive_concurrency``) and a
client-side rate limit per provider (requests per minute), honouring ``Retry-After``: a
rate-limited call waits what the provider asked plus a little jitter (or, without a hint, a
full-jitter exponential backoff from ``core.retry``) and is tried again, up to a few times. A
hint longer than ``MAX_RETRY_AFTER`` is not slept through: the request stays in its lane and
the provider is held until then (``ctx.guard.hold``), so later calls and passes do not hammer
it either. Other transient errors leave the request in its lane for the next pass; so do auth
and quota errors, which open the provider's circuit breaker — while it is open, that
provider's requests are not sent at all, and nothing is dead-lettered for the outage.
Each chunk (twice the pool's size) is settled as one delivery whose id depends only on the
requests and their attempts, so a crash after the sink write and before the commit usually
rewrites the same file instead of adding a second line; the chunk is small because such a crash
also repeats its calls, and the provider bills them again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from planner.core.limits import RateLimits
from planner.core.model import Lane
from planner.core.retry import Retry, RetryPolicy
from planner.core.states import RequestState
from planner.errors import AuthFailed, ProviderError, QuotaExceeded, RateLimited
from planner.pipeline.context import StageContext
from planner.pipeline.deliver import Outcome, SettleResult, settle
from planner.providers.base import BatchLine, LineResult
from planner.store import requests as store_requests
from planner.store.requests import StoredRequest

_log = logging.getLogger(__name__)

CHUNK_PER_WORKER = 2  # requests settled per delivery, per worker of the pool
RATE_LIMIT_RETRIES = 3
MAX_RETRY_AFTER = 120.0  # seconds; a longer wait ends this pass for the request
RETRY_POLICY = RetryPolicy(
    base_seconds=1.0, cap_seconds=MAX_RETRY_AFTER, max_attempts=RATE_LIMIT_RETRIES
)


@dataclass(slots=True)
class InteractiveResult:
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0
    skipped: int = 0  # not sent: the provider's circuit is open or a rate limit holds it
    settled: list[SettleResult] = field(default_factory=list)


class RateGate:
    """At most ``per_minute`` units (calls or tokens) start in any minute, spread evenly: each
    start reserves ``units x 60 / per_minute`` seconds of the gate. Thread-safe."""

    def __init__(
        self, per_minute: float | None, sleep: Callable[[float], None], clock: Callable[[], float]
    ):
        self._gap = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep
        self._clock = clock

    def wait(self, units: int = 1) -> None:
        if not self._gap:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self._gap * units
        if start > now:
            self._sleep(start - now)


@dataclass(slots=True)
class ProviderGates:
    """The request gate and the token gate of one provider."""

    requests: RateGate
    tokens: RateGate

    def wait(self, tokens: int) -> None:
        self.requests.wait()
        self.tokens.wait(tokens)


def delivery_id(chunk: Sequence[StoredRequest]) -> str:
    digest = hashlib.sha1(
        ",".join(f"{s.id}:{s.attempts}" for s in chunk).encode(), usedforsecurity=False
    )
    return f"interactive-{digest.hexdigest()[:20]}"


def _call(
    ctx: StageContext,
    stored: StoredRequest,
    gates: Mapping[str, ProviderGates],
    sleep: Callable[[float], None],
    now: datetime,
) -> LineResult | None:
    """One request's call; ``None`` when it should simply be tried on a later pass."""
    assert stored.provider is not None
    name = stored.provider
    provider = ctx.providers[name]
    line = BatchLine.from_request(stored.request)
    gate = gates[name]
    tokens = stored.estimate.input_tokens if stored.estimate else 0
    guard = ctx.guard
    for attempt in range(1, RATE_LIMIT_RETRIES + 1):
        if not guard.allows(name) or guard.held(name, now):
            return None  # the circuit opened or a long rate limit began during this pass
        gate.wait(tokens)
        try:
            answer = provider.call_interactive(line, flex=stored.lane is Lane.FLEX)
        except RateLimited as exc:
            guard.record(name, now, exc)
            decision = guard.retry(exc, attempt, now, RETRY_POLICY)
            if not isinstance(decision, Retry):
                return None
            if decision.delay(now) > MAX_RETRY_AFTER:
                guard.hold(name, decision.at)
                return None
            sleep(decision.delay(now))
            continue
        except ProviderError as exc:
            guard.record(name, now, exc)
            if exc.retryable or isinstance(exc, AuthFailed | QuotaExceeded):
                return None  # not the request's fault: it stays in its lane
            return LineResult(
                key=line.key,
                ok=False,
                error_code=type(exc).__name__,
                error_message=str(exc),
                retryable=False,
            )
        guard.record(name, now)
        return answer
    return None


def run_interactive_stage(
    ctx: StageContext,
    now: datetime,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> InteractiveResult:
    """Execute every request waiting in the interactive or flex lane."""
    result = InteractiveResult()
    gates = {
        name: ProviderGates(
            RateGate(limits.requests_per_minute, sleep, clock),
            RateGate(limits.tokens_per_minute, sleep, clock),
        )
        for name, limits in ((n, ctx.rate_limits.get(n, RateLimits())) for n in ctx.providers)
    }
    with ctx.session_factory() as session:
        waiting = list(
            store_requests.queued_for_planning(
                session, states=(RequestState.INTERACTIVE, RequestState.FLEX)
            )
        )
    admitted = {
        name: ctx.guard.admit(name, ctx.providers[name], now) and not ctx.guard.held(name, now)
        for name in {s.provider for s in waiting if s.provider is not None}
    }
    result.skipped = sum(1 for s in waiting if not admitted.get(s.provider or "", False))
    result.deferred += result.skipped
    waiting = [s for s in waiting if admitted.get(s.provider or "", False)]
    with ThreadPoolExecutor(max_workers=ctx.interactive_concurrency) as pool:
        # small deliveries: a crash between the calls and the commit repeats (and the provider
        # bills again) at most one chunk's calls, as no interactive API takes an idempotency key
        size = CHUNK_PER_WORKER * ctx.interactive_concurrency
        for start in range(0, len(waiting), size):
            chunk = waiting[start : start + size]
            answers = list(pool.map(lambda s: _call(ctx, s, gates, sleep, now), chunk))
            outcomes = [
                Outcome(s, a, s.lane or Lane.INTERACTIVE)
                for s, a in zip(chunk, answers, strict=True)
                if a is not None
            ]
            result.deferred += len(chunk) - len(outcomes)
            if not outcomes:
                continue
            settled = settle(ctx, delivery_id([o.stored for o in outcomes]), outcomes, now)
            result.succeeded += settled.succeeded
            result.retried += settled.retried
            result.dead += settled.dead
            result.settled.append(settled)
    return result

"""The interactive executor: requests the policy sent to the synchronous API (standard or flex).

Calls run with bounded concurrency (a thread pool of ``interactive_concurrency``) and a
client-side rate limit per provider (requests per minute), honouring ``Retry-After``: a
rate-limited call waits what the provider asked and is tried again, up to a few times; other
transient errors leave the request in its lane for the next pass. Each chunk is settled as one
delivery whose id depends only on the requests and their attempts, so a crash after the sink
write and before the commit rewrites the same file instead of adding a second line.
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
from planner.core.states import RequestState
from planner.errors import ProviderError, RateLimited
from planner.pipeline.context import StageContext
from planner.pipeline.deliver import Outcome, SettleResult, settle
from planner.providers.base import BatchLine, LineResult
from planner.store import requests as store_requests
from planner.store.requests import StoredRequest

_log = logging.getLogger(__name__)

CHUNK = 200  # requests settled per delivery
RATE_LIMIT_RETRIES = 3
MAX_RETRY_AFTER = 120.0  # seconds; a longer wait ends this pass for the request


@dataclass(slots=True)
class InteractiveResult:
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0
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
) -> LineResult | None:
    """One request's call; ``None`` when it should simply be tried on a later pass."""
    assert stored.provider is not None
    provider = ctx.providers[stored.provider]
    line = BatchLine.from_request(stored.request)
    gate = gates[stored.provider]
    tokens = stored.estimate.input_tokens if stored.estimate else 0
    for _ in range(RATE_LIMIT_RETRIES):
        gate.wait(tokens)
        try:
            return provider.call_interactive(line, flex=stored.lane is Lane.FLEX)
        except RateLimited as exc:
            wait = exc.retry_after if exc.retry_after is not None else 1.0
            if wait > MAX_RETRY_AFTER:
                return None
            sleep(wait)
        except ProviderError as exc:
            if exc.retryable:
                return None
            return LineResult(
                key=line.key,
                ok=False,
                error_code=type(exc).__name__,
                error_message=str(exc),
                retryable=False,
            )
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
    with ThreadPoolExecutor(max_workers=ctx.interactive_concurrency) as pool:
        for start in range(0, len(waiting), CHUNK):
            chunk = waiting[start : start + CHUNK]
            answers = list(pool.map(lambda s: _call(ctx, s, gates, sleep), chunk))
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

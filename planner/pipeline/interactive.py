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
No interactive API takes an idempotency key, so the lane sends each request at most once per
attempt, through the outbox of ``store/sends.py``: an intent is committed right before the call
and the answer right after it; each chunk of answers (twice the pool's size) is then named as
one delivery, written to the sinks and settled, which deletes its outbox rows. After a crash,
the next pass finds the rows nobody is working on any more (this process's own from an earlier
pass, a dead process's on this host, or any whose lease ran out): answered ones are delivered
from the store, under the delivery name they had, so the sink file is rewritten rather than
doubled; unanswered ones, and calls whose answer was lost on the way back (a read timeout, a
cut connection), are dead-lettered as ``unknown_outcome``: the provider may have carried them
out and billed them, and a second send would bill them again. The dead-letter line says so;
``planner requeue --reason unknown_outcome`` sends them once more, when the operator accepts
that.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from planner import crashpoints
from planner.core.limits import RateLimits
from planner.core.model import Lane, Usage
from planner.core.retry import Retry, RetryPolicy
from planner.errors import AuthFailed, OutcomeUnknown, ProviderError, QuotaExceeded, RateLimited
from planner.pipeline.context import StageContext
from planner.pipeline.deliver import Outcome, SettleResult, settle
from planner.pipeline.process import certainly_gone
from planner.providers.base import BatchLine, LineResult
from planner.store import requests as store_requests
from planner.store import sends
from planner.store.requests import StoredRequest

_log = logging.getLogger(__name__)

CHUNK_PER_WORKER = 2  # requests settled per delivery, per worker of the pool
RATE_LIMIT_RETRIES = 3
MAX_RETRY_AFTER = 120.0  # seconds; a longer wait ends this pass for the request
RETRY_POLICY = RetryPolicy(
    base_seconds=1.0, cap_seconds=MAX_RETRY_AFTER, max_attempts=RATE_LIMIT_RETRIES
)
# An intent older than this is given up even when its owner may live elsewhere: longer than any
# call (flex waits up to 15 min) plus its rate-limit retries.
SEND_LEASE = timedelta(minutes=30)
UNKNOWN_OUTCOME = "unknown_outcome"


@dataclass(slots=True)
class InteractiveResult:
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0
    # sent, answer lost: dead-lettered, not sent again (module docstring); by provider
    unknown: Counter[str] = field(default_factory=Counter)
    recovered: int = 0  # outbox rows a stopped pass or process left, settled this pass
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


def delivery_id() -> str:
    """A new delivery name: random, so that two stores (or a store made anew) writing one
    results folder never share a file name; it is recorded in the outbox before anything is
    written, and a crash re-delivers under the recorded name (module docstring)."""
    return f"interactive-{uuid.uuid4().hex}"


def encode_answer(result: LineResult) -> str:
    """A provider's answer as the outbox keeps it (JSON; ``decode_answer`` reads it back)."""
    usage = result.usage
    return json.dumps(
        {
            "ok": result.ok,
            "response": result.response,
            "usage": None
            if usage is None
            else [usage.input_tokens, usage.output_tokens, usage.cached_input_tokens],
            "error_code": result.error_code,
            "error_message": result.error_message,
            "retryable": result.retryable,
            "raw": result.raw,
            "tier": result.tier,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode_answer(key: str, text: str) -> LineResult:
    data = json.loads(text)
    usage = data["usage"]
    return LineResult(
        key=key,
        ok=bool(data["ok"]),
        response=data["response"],
        usage=None if usage is None else Usage(usage[0], usage[1], usage[2]),
        error_code=data["error_code"],
        error_message=data["error_message"],
        retryable=bool(data["retryable"]),
        raw=data.get("raw"),  # absent from answers an older version recorded
        tier=data.get("tier"),
    )


def unknown_outcome(key: str, provider: str, why: str) -> LineResult:
    """The dead-letter answer of a send whose outcome nobody knows."""
    return LineResult(
        key=key,
        ok=False,
        error_code=UNKNOWN_OUTCOME,
        error_message=(
            f"sent to {provider}, but {why}: the provider may have answered and billed it, "
            "so it is not sent again (`planner requeue --reason unknown_outcome` sends it once "
            "more, at the risk of a second charge)"
        ),
        retryable=False,
    )


class _Sender:
    """Sends one request through the outbox; shared by the pool's threads."""

    def __init__(
        self,
        ctx: StageContext,
        gates: Mapping[str, ProviderGates],
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        now: datetime,
    ):
        self._ctx = ctx
        self._gates = gates
        self._sleep = sleep
        self._clock = clock
        self._started = (now, clock())

    def now(self) -> datetime:
        """The stage's ``now`` moved on by the clock: a pass can outlast one lease."""
        start, tick = self._started
        return start + timedelta(seconds=max(0.0, self._clock() - tick))

    def _begin(self, stored: StoredRequest) -> bool:
        with self._ctx.session_factory() as session, session.begin():
            return sends.begin(
                session, stored.id, stored.attempts, self._ctx.owner, self.now(), SEND_LEASE
            )

    def _withdraw(self, stored: StoredRequest) -> None:
        with self._ctx.session_factory() as session, session.begin():
            sends.withdraw(session, stored.id, self._ctx.owner)

    def _answer(self, stored: StoredRequest, result: LineResult) -> bool:
        with self._ctx.session_factory() as session, session.begin():
            return sends.answer(
                session, stored.id, self._ctx.owner, encode_answer(result), self.now()
            )

    def send(self, stored: StoredRequest) -> LineResult | None:
        """The request's answer, committed to the outbox; ``None`` when it was not sent and
        stays in its lane for a later pass. Any other exception leaves the intent in place:
        the call may have been made, so the next pass settles it as an unknown outcome."""
        result = self._call(stored)
        if result is None:
            return None
        crashpoints.reached("after_interactive_call")
        if not self._answer(stored, result):
            return None  # given up as unknown meanwhile (a lease ran out): not ours to settle
        return result

    def _call(self, stored: StoredRequest) -> LineResult | None:
        assert stored.provider is not None
        ctx, name = self._ctx, stored.provider
        provider = ctx.providers[name]
        line = BatchLine.from_request(stored.request)
        tokens = stored.estimate.input_tokens if stored.estimate else 0
        guard = ctx.guard
        for attempt in range(1, RATE_LIMIT_RETRIES + 1):
            now = self.now()
            if not guard.allows(name) or guard.held(name, now):
                return None  # the circuit opened or a long rate limit began during this pass
            self._gates[name].wait(tokens)
            if ctx.stop_requested():
                return None  # stopping: not sent, it waits in its lane for the next start
            if not self._begin(stored):
                return None  # another worker sends it, or it moved on
            try:
                answer = provider.call_interactive(line, flex=stored.lane is Lane.FLEX)
            except OutcomeUnknown as exc:
                guard.record(name, self.now(), exc)
                return unknown_outcome(line.key, name, f"no answer came back ({exc})")
            except RateLimited as exc:
                self._withdraw(stored)  # refused: nothing was done, nothing billed
                now = self.now()
                guard.record(name, now, exc)
                decision = guard.retry(exc, attempt, now, RETRY_POLICY)
                if not isinstance(decision, Retry):
                    return None
                if decision.delay(now) > MAX_RETRY_AFTER:
                    guard.hold(name, decision.at)
                    return None
                self._sleep(decision.delay(now))
                continue
            except ProviderError as exc:
                guard.record(name, self.now(), exc)
                if exc.retryable or isinstance(exc, AuthFailed | QuotaExceeded):
                    self._withdraw(stored)  # an error answer: the request was not carried out
                    return None  # not the request's fault: it stays in its lane
                return LineResult(  # the request's own answer, kept in the outbox
                    key=line.key,
                    ok=False,
                    error_code=type(exc).__name__,
                    error_message=str(exc),
                    retryable=False,
                )
            guard.record(name, self.now())
            return answer
        return None


def _deliver(
    ctx: StageContext,
    outcomes: Sequence[Outcome],
    now: datetime,
    result: InteractiveResult,
    name: str | None = None,
) -> None:
    """Name the delivery in the outbox (unless it has its name already), write it to the
    sinks, settle it and delete its outbox rows in the same transaction. A crash anywhere in
    here delivers the same rows under the same name again."""
    ids = [o.stored.id for o in outcomes]
    if name is None:
        name = delivery_id()
        with ctx.session_factory() as session, session.begin():
            sends.assign_delivery(session, ids, name)

    def finish(session: Session) -> None:
        sends.finish(session, ids)

    settled = settle(ctx, name, outcomes, now, extra_writes=finish)
    result.succeeded += settled.succeeded
    result.retried += settled.retried
    result.dead += settled.dead
    result.unknown.update(
        o.stored.provider or "" for o in outcomes if o.result.error_code == UNKNOWN_OUTCOME
    )
    result.settled.append(settled)


def _is_abandoned(send: sends.Send, owner: str, now: datetime) -> bool:
    """Nobody is working on this row: this process's own from an earlier pass (passes of the
    lane never overlap within a process), a stopped process's, or one whose lease ran out."""
    return send.owner == owner or send.lease_until < now or certainly_gone(send.owner)


def recover_sends(ctx: StageContext, now: datetime, result: InteractiveResult) -> None:
    """Settle what earlier passes left in the outbox (module docstring)."""
    with ctx.session_factory() as session:
        left = [s for s in sends.load(session) if _is_abandoned(s, ctx.owner, now)]
        stored = {r.id: r for r in store_requests.load(session, [s.request_id for s in left])}
    stale = [
        s.request_id
        for s in left
        if s.request_id not in stored
        or stored[s.request_id].attempts != s.attempt
        or stored[s.request_id].state not in sends.SENDABLE
    ]
    if stale:  # the request moved on some other way: the row no longer means anything
        with ctx.session_factory() as session, session.begin():
            sends.finish(session, stale)
    groups: dict[str | None, list[Outcome]] = defaultdict(list)
    for send in left:
        if send.request_id in stale:
            continue
        request = stored[send.request_id]
        key, provider = request.request.key, request.provider or "the provider"
        if send.answer_json is None:
            _log.warning(
                "interactive request %s/%s: sent by %s, answer never recorded; dead-lettered as %s",
                request.request.source,
                key,
                send.owner,
                UNKNOWN_OUTCOME,
                extra={"event": "interactive_unknown_outcome", "provider": provider},
            )
            answer = unknown_outcome(
                key, provider, "the sender stopped before its answer was recorded"
            )
        else:
            answer = decode_answer(key, send.answer_json)
        groups[send.delivery_id].append(Outcome(request, answer, request.lane or Lane.INTERACTIVE))
    for name, outcomes in sorted(groups.items(), key=lambda item: item[0] or ""):
        result.recovered += len(outcomes)
        _deliver(ctx, outcomes, now, result, name)


def run_interactive_stage(
    ctx: StageContext,
    now: datetime,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> InteractiveResult:
    """Settle what earlier passes left in the outbox, then send every request waiting in the
    interactive or flex lane."""
    result = InteractiveResult()
    recover_sends(ctx, now, result)
    gates = {
        name: ProviderGates(
            RateGate(limits.requests_per_minute, sleep, clock),
            RateGate(limits.tokens_per_minute, sleep, clock),
        )
        for name, limits in ((n, ctx.rate_limits.get(n, RateLimits())) for n in ctx.providers)
    }
    with ctx.session_factory() as session:
        waiting = list(
            store_requests.queued_for_planning(session, states=sends.SENDABLE, unsent=True)
        )
    admitted = {
        name: ctx.guard.admit(name, ctx.providers[name], now) and not ctx.guard.held(name, now)
        for name in {s.provider for s in waiting if s.provider is not None}
    }
    result.skipped = sum(1 for s in waiting if not admitted.get(s.provider or "", False))
    result.deferred += result.skipped
    waiting = [s for s in waiting if admitted.get(s.provider or "", False)]
    sender = _Sender(ctx, gates, sleep, clock, now)
    with ThreadPoolExecutor(max_workers=ctx.interactive_concurrency) as pool:
        size = CHUNK_PER_WORKER * ctx.interactive_concurrency
        for start in range(0, len(waiting), size):
            if ctx.stop_requested():  # what was sent is settled; the rest waits in its lane
                result.deferred += len(waiting) - start
                break
            chunk = waiting[start : start + size]
            answers = list(pool.map(sender.send, chunk))
            outcomes = [
                Outcome(s, a, s.lane or Lane.INTERACTIVE)
                for s, a in zip(chunk, answers, strict=True)
                if a is not None
            ]
            result.deferred += len(chunk) - len(outcomes)
            if outcomes:
                crashpoints.reached("after_interactive_answer")
                _deliver(ctx, outcomes, sender.now(), result)
    return result

"""The interactive lane's answer to 429s, outages and lost answers, one send at a time.

A scripted provider raises the errors the adapters raise (no network); the outbox is a real
SQLite store, so each test also shows what the send left there: nothing when nothing was
carried out, the answer when there was one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from planner.core.model import Endpoint, Lane, Request, Usage
from planner.core.states import RequestState
from planner.errors import (
    AuthFailed,
    OutcomeUnknown,
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
)
from planner.pipeline.guard import ProviderGuard
from planner.pipeline.interactive import (
    MAX_RETRY_AFTER,
    UNKNOWN_OUTCOME,
    ProviderGates,
    RateGate,
    _Sender,
    decode_answer,
)
from planner.providers.base import BatchLine, LineResult
from planner.store import requests, sends
from planner.store.engine import make_engine, make_session_factory, upgrade
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
    """The part of ``StageContext`` a send uses."""

    providers: dict[str, Any]
    session_factory: Callable[[], Session]
    guard: ProviderGuard = field(default_factory=lambda: ProviderGuard(rng=random.Random(3)))
    owner: str = "test:1:abc"
    stop_requested: Callable[[], bool] = lambda: False


@pytest.fixture
def store(tmp_path: Path) -> Callable[[], Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'planner.db'}")
    upgrade(engine)
    factory = make_session_factory(engine)
    request = Request("src", "k1", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, {"messages": []}, NOW)
    with factory() as s, s.begin():
        requests.ingest(s, [request], NOW)
        requests.transition_requests(
            s, [1], RequestState.INTERACTIVE, NOW, lane=Lane.INTERACTIVE.value, provider="openai"
        )
    return factory


def stored(ctx: Ctx) -> StoredRequest:
    with ctx.session_factory() as s:
        return requests.load(s, [1])[0]


def outbox(ctx: Ctx) -> list[sends.Send]:
    with ctx.session_factory() as s:
        return sends.load(s)


def run(ctx: Ctx) -> tuple[LineResult | None, list[float]]:
    slept: list[float] = []
    gates = {
        "openai": ProviderGates(
            RateGate(None, slept.append, lambda: 0.0), RateGate(None, slept.append, lambda: 0.0)
        )
    }
    sender = _Sender(ctx, gates, slept.append, lambda: 0.0, NOW)  # type: ignore[arg-type]
    return sender.send(stored(ctx)), slept


def test_a_short_hint_is_slept_through_with_a_little_jitter(store: Callable[[], Session]) -> None:
    provider = Scripted([RateLimited("429", retry_after=2.0)])
    ctx = Ctx({"openai": provider}, store)
    answer, slept = run(ctx)
    assert answer == OK and provider.calls == 2
    assert len(slept) == 1 and 2.0 <= slept[0] <= 2.5
    (row,) = outbox(ctx)  # the answer is in the store before anything else happens
    assert row.owner == ctx.owner and row.answer_json is not None
    assert decode_answer("k1", row.answer_json) == OK


def test_without_a_hint_the_wait_grows_with_jitter(store: Callable[[], Session]) -> None:
    provider = Scripted([RateLimited("429"), RateLimited("429")])
    answer, slept = run(Ctx({"openai": provider}, store))
    assert answer == OK and provider.calls == 3
    assert 0 <= slept[0] <= 1.0 and 0 <= slept[1] <= 2.0  # full jitter under 1 s, then 2 s


def test_rate_limits_give_up_after_a_few_tries_and_keep_the_request(
    store: Callable[[], Session],
) -> None:
    provider = Scripted([RateLimited("429", retry_after=0.0) for _ in range(5)])
    ctx = Ctx({"openai": provider}, store)
    answer, slept = run(ctx)
    assert answer is None and provider.calls == 3 and len(slept) == 2
    assert outbox(ctx) == [], "refused calls did nothing: the request is free to send later"


def test_a_long_hint_holds_the_provider_instead_of_sleeping(store: Callable[[], Session]) -> None:
    provider = Scripted([RateLimited("429", retry_after=MAX_RETRY_AFTER + 60)])
    ctx = Ctx({"openai": provider}, store)
    answer, slept = run(ctx)
    assert answer is None and slept == [] and provider.calls == 1
    assert ctx.guard.held("openai", NOW + timedelta(seconds=MAX_RETRY_AFTER + 59))
    # the next request to the same provider in this pass is not even sent
    answer, _ = run(ctx)
    assert answer is None and provider.calls == 1


@pytest.mark.parametrize("error", [AuthFailed("401"), Transient("503")])
def test_outages_keep_the_request_in_its_lane(
    error: ProviderError, store: Callable[[], Session]
) -> None:
    provider = Scripted([error])
    ctx = Ctx({"openai": provider}, store)
    answer, _ = run(ctx)
    assert answer is None  # not dead-lettered: the key, not the request, is at fault
    assert outbox(ctx) == []
    assert ctx.guard.is_open("openai") is isinstance(error, AuthFailed)


def test_an_open_circuit_sends_nothing(store: Callable[[], Session]) -> None:
    provider = Scripted([])
    ctx = Ctx({"openai": provider}, store)
    ctx.guard.record("openai", NOW, AuthFailed("401"))
    answer, _ = run(ctx)
    assert answer is None and provider.calls == 0


def test_a_request_level_error_is_the_requests_answer(store: Callable[[], Session]) -> None:
    answer, _ = run(Ctx({"openai": Scripted([Permanent("400 bad")])}, store))
    assert answer is not None and not answer.ok and not answer.retryable
    assert answer.error_code == "Permanent"


def test_a_lost_answer_is_an_unknown_outcome_never_sent_again(
    store: Callable[[], Session],
) -> None:
    provider = Scripted([OutcomeUnknown("openai interactive call timed out: ReadTimeout")])
    ctx = Ctx({"openai": provider}, store)
    answer, slept = run(ctx)
    assert answer is not None and not answer.ok and not answer.retryable
    assert answer.error_code == UNKNOWN_OUTCOME and "may have answered and billed" in (
        answer.error_message or ""
    )
    assert provider.calls == 1 and slept == []
    (row,) = outbox(ctx)
    assert row.answer_json is not None
    assert decode_answer("k1", row.answer_json).error_code == UNKNOWN_OUTCOME
    # a second send of the same attempt is refused by the outbox: one call, ever
    again, _ = run(ctx)
    assert again is None and provider.calls == 1


def test_a_send_someone_else_holds_is_not_made(store: Callable[[], Session]) -> None:
    provider = Scripted([])
    ctx = Ctx({"openai": provider}, store)
    with store() as s, s.begin():
        assert sends.begin(s, 1, 1, "elsewhere:7:xyz", NOW, timedelta(minutes=30))
    answer, _ = run(ctx)
    assert answer is None and provider.calls == 0


def test_a_stop_sends_nothing_more(store: Callable[[], Session]) -> None:
    provider = Scripted([])
    ctx = Ctx({"openai": provider}, store, stop_requested=lambda: True)
    answer, _ = run(ctx)
    assert answer is None and provider.calls == 0
    assert outbox(ctx) == [], "not sent: free for the next start"

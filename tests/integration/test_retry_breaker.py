"""Retries and the circuit breaker end to end: the real SDKs against the sandbox with faults.

- A revoked OpenAI key (401 on every OpenAI call): the OpenAI breaker opens on the first
  refusal, the remaining OpenAI work is skipped without a call (no retry storm), Gemini's work
  completes, nothing is dead-lettered or billed; once the key works again and the breaker's
  backoff is over, a probe closes it and every request ends exactly once.
- 429 with ``retry-after: 30`` on OpenAI creates: the refused batches wait in ``uploading`` with
  ``next_poll_at`` at least 30 s ahead, a scheduled submit pass before then leaves them alone,
  one after it sends them, and each batch is created once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from planner.config import load_config
from planner.core.retry import RetryPolicy
from planner.core.states import BatchState
from planner.metrics import Metrics
from planner.pipeline.context import StageContext
from planner.pipeline.guard import ProviderGuard
from planner.pipeline.poll import run_poll_stage
from planner.pipeline.submit import run_submit_stage
from planner.providers.base import BatchProvider
from planner.runtime import clock
from planner.runtime.daemon import Daemon
from planner.runtime.lifecycle import Lifecycle
from planner.runtime.runner import run_once
from planner.runtime.wiring import build_context
from planner.sandbox import RunningSandbox, serve
from planner.sandbox.faults import FaultPlan
from planner.store import batches as store_batches
from planner.store.tables import REQUEST
from tests.integration.test_run_once import CONFIG, ledger_of, read_sink, spool_lines

OPENAI_MODELS = ("gpt-4o-mini", "text-embedding-3-small")
INTERACTIVE = "urgent-1"  # the one request the policy sends to OpenAI's interactive API


class Counting:
    """A provider that counts every call that reaches the network before passing it on."""

    def __init__(self, inner: BatchProvider) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()
        self.kind = inner.kind

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target) or name == "build_payload":  # pure: no call to the provider
            return target

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return target(*args, **kwargs)

        return counted


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "work.jsonl").write_text("".join(json.dumps(line) + "\n" for line in spool_lines()))
    (tmp_path / "planner.yaml").write_text(CONFIG)
    return tmp_path


@pytest.fixture()
def sandbox() -> Iterator[RunningSandbox]:
    running = serve(speed=0.0)
    yield running
    running.stop()


def context(workspace: Path, sandbox: RunningSandbox) -> tuple[StageContext, Counting]:
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url=sandbox.url)
    openai = Counting(ctx.providers["openai"])
    providers: dict[str, Any] = {**ctx.providers, "openai": openai}
    return dataclasses.replace(ctx, providers=providers), openai


def expected_keys() -> set[str]:
    return {line.get("custom_id") or line.get("key") or line["id"] for line in spool_lines()}


def openai_keys() -> set[str]:
    keys = set()
    for line in spool_lines():
        model = line.get("body", {}).get("model") or line.get("model") or "gpt-4o-mini"
        if model in OPENAI_MODELS:
            keys.add(line.get("custom_id") or line.get("key") or line["id"])
    return keys


def request_states(ctx: StageContext) -> dict[str, str]:
    with ctx.session_factory() as session:
        rows = session.execute(select(REQUEST.c.key, REQUEST.c.state)).all()
    return {key: state for key, state in rows}


def assert_every_request_once(workspace: Path, sandbox: RunningSandbox) -> None:
    results, dead = read_sink(workspace / "results")
    assert set(results) == expected_keys() and not dead
    assert all(len(records) == 1 for records in results.values())
    requests = ledger_of(sandbox)["requests"]
    billed = {r["key"]: r["times_billed"] for r in requests if r["lane"] == "batch"}
    assert set(billed) == expected_keys() - {INTERACTIVE}
    assert all(n == 1 for n in billed.values()), billed
    # the interactive request is billed under the sandbox's own id: exactly one such call
    assert [r["times_billed"] for r in requests if r["lane"] != "batch"] == [1]
    ours = [b["our_id"] for b in ledger_of(sandbox)["batches"] if b["our_id"]]
    assert len(ours) == len(set(ours))  # no batch created twice


def test_a_revoked_key_opens_that_providers_circuit_and_the_other_completes(
    workspace: Path, sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="planner.pipeline.guard")
    sandbox.state.faults = FaultPlan.from_spec("auth_error=1,auth_error_on=openai")
    ctx, openai = context(workspace, sandbox)
    t0 = clock.utc_now()

    first = run_once(ctx, now=lambda: t0)
    assert ctx.guard.is_open("openai") and not ctx.guard.is_open("gemini")
    assert openai.calls == Counter(submit=1)  # one refusal, then no call at all
    with ctx.session_factory() as session:
        waiting = store_batches.batches_in(session, (BatchState.PLANNED, BatchState.UPLOADING))
    assert waiting and {b.provider for b in waiting} == {"openai"}
    assert first.stages["submit"]["skipped"] == len(waiting) - 1
    assert first.stages["interactive"]["succeeded"] == 0  # urgent-1 goes to OpenAI

    results, dead = read_sink(workspace / "results")
    assert set(results) == expected_keys() - openai_keys() and not dead
    billed = {r["key"] for r in ledger_of(sandbox)["requests"]}
    assert billed == expected_keys() - openai_keys()  # OpenAI billed nothing
    states = request_states(ctx)
    assert {states[k] for k in openai_keys()} <= {"planned", "interactive"}  # kept, not dead

    # a pass before the breaker's backoff is over does not touch OpenAI, not even a probe
    second = run_once(ctx, now=lambda: t0 + timedelta(seconds=30))
    assert openai.calls == Counter(submit=1)
    assert second.stages["submit"]["skipped"] == len(waiting)

    # the key works again; after the backoff one probe (a list) closes the circuit
    sandbox.state.faults = FaultPlan()
    run_once(ctx, now=lambda: t0 + timedelta(seconds=61))
    assert not ctx.guard.is_open("openai")
    assert openai.calls["list_ours"] >= 1 and openai.calls["submit"] == 1 + len(waiting)
    assert_every_request_once(workspace, sandbox)

    events = [
        (r.event, r.provider)  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "event", "").startswith("circuit_")
    ]
    assert events == [
        ("circuit_opened", "openai"),
        ("circuit_half_open", "openai"),
        ("circuit_closed", "openai"),
    ]


def test_a_rate_limited_create_waits_for_the_hint_then_completes(
    workspace: Path, sandbox: RunningSandbox
) -> None:
    sandbox.state.faults = FaultPlan.from_spec(
        "rate_limit=0,rate_limit_first=2,rate_limit_on=openai.create,retry_after=30"
    )
    ctx, _ = context(workspace, sandbox)
    t0 = clock.utc_now()

    first = run_once(ctx, now=lambda: t0)
    assert first.stages["submit"]["deferred"] == 2
    assert not ctx.guard.is_open("openai")  # a rate limit is backoff, not an outage
    with ctx.session_factory() as session:
        deferred = store_batches.batches_in(session, (BatchState.UPLOADING,))
    assert len(deferred) == 2
    for batch in deferred:
        assert batch.next_poll_at is not None
        # the hint (30 s) plus at most 10% jitter, never earlier
        assert t0 + timedelta(seconds=30) <= batch.next_poll_at <= t0 + timedelta(seconds=33)
        assert batch.next_poll_at > clock.utc_now()
    created = len(ledger_of(sandbox)["batches"])

    # a scheduled pass before the retry time leaves them alone
    early = run_submit_stage(ctx, t0 + timedelta(seconds=10))
    assert early.submitted == [] and early.deferred == [] and early.adopted == []
    assert len(ledger_of(sandbox)["batches"]) == created
    # after it they go out, once each
    late = run_submit_stage(ctx, t0 + timedelta(seconds=34))
    assert sorted(late.submitted) == sorted(b.id for b in deferred)
    with ctx.session_factory() as session:
        for batch in deferred:
            sent = store_batches.get_batch(session, batch.id)
            assert sent is not None and sent.state is BatchState.SUBMITTED
            assert sent.next_poll_at is None  # polled at once, not after the old retry time

    run_once(ctx, now=lambda: t0 + timedelta(seconds=35))
    assert_every_request_once(workspace, sandbox)


def test_the_daemon_exports_the_circuit_and_keeps_it_over_a_reload(
    workspace: Path, sandbox: RunningSandbox
) -> None:
    sandbox.state.faults = FaultPlan.from_spec("auth_error=1,auth_error_on=openai")
    config_path = workspace / "planner.yaml"
    cfg = load_config(config_path)
    ctx = build_context(cfg, sandbox_url=sandbox.url)
    registry = CollectorRegistry()
    metrics = Metrics(registry, known_models=ctx.catalog.models(), process_metrics=False)
    daemon = Daemon(config_path, sandbox.url, Lifecycle(), cfg, ctx, metrics, BackgroundScheduler())

    def gauge(provider: str) -> float | None:
        return registry.get_sample_value("planner_circuit_open", {"provider": provider})

    daemon._stage("ingest", daemon.ingest)()
    daemon._stage("submit", daemon.plan_and_submit)()
    assert (gauge("openai"), gauge("gemini")) == (1.0, 0.0)

    guard = daemon.ctx.guard
    daemon.reload()  # SIGHUP: a new context, the same breakers
    assert daemon.ctx is not ctx and daemon.ctx.guard is guard
    daemon._stage("poll", daemon.poll_and_collect)()
    assert (gauge("openai"), gauge("gemini")) == (1.0, 0.0)


def test_a_create_that_keeps_failing_is_parked_not_failed(
    workspace: Path, sandbox: RunningSandbox
) -> None:
    """Out of attempts, an unconfirmed batch waits the longest backoff in ``uploading``: failing
    it could bill its requests twice if the provider did create it."""
    sandbox.state.faults = FaultPlan.from_spec("server_error=1,server_error_on=openai.create")
    ctx, openai = context(workspace, sandbox)
    policy = RetryPolicy(max_attempts=1, cap_seconds=900)
    ctx = dataclasses.replace(ctx, guard=ProviderGuard(rng=random.Random(0), retry_policy=policy))
    t0 = clock.utc_now()
    run_once(ctx, now=lambda: t0)
    with ctx.session_factory() as session:
        parked = store_batches.batches_in(session, (BatchState.UPLOADING,))
    assert parked and {b.provider for b in parked} == {"openai"}
    assert openai.calls["submit"] == len(parked) < 5  # below the breaker's threshold
    assert not ctx.guard.is_open("openai")
    assert all(b.next_poll_at == t0 + timedelta(seconds=900) for b in parked)
    assert all(b.attempt == 1 for b in parked)


def test_a_failed_poll_is_retried_after_a_backoff(workspace: Path, sandbox: RunningSandbox) -> None:
    sandbox.state.faults = FaultPlan.from_spec("server_error=1,server_error_on=openai.get")
    ctx, _ = context(workspace, sandbox)
    t0 = clock.utc_now()
    first = run_once(ctx, now=lambda: t0)
    assert first.stages["submit"]["submitted"] >= 3
    with ctx.session_factory() as session:
        waiting = [
            b
            for b in store_batches.batches_in(session, (BatchState.SUBMITTED,))
            if b.provider == "openai"
        ]
    assert len(waiting) == 3  # chat, embeddings, responses: each poll failed once
    policy = ctx.guard.retry_policy
    for batch in waiting:
        assert batch.next_poll_at is not None
        assert t0 <= batch.next_poll_at <= t0 + timedelta(seconds=policy.base_seconds)
    # a scheduled poll before then asks nothing; the breaker saw 3 failures, not 5: closed
    assert not ctx.guard.is_open("openai")
    sandbox.state.faults = FaultPlan()
    early = run_poll_stage(ctx, t0 - timedelta(seconds=1))
    assert not {b.id for b in waiting} & {*early.finished, *early.running, *early.errors}
    late = run_poll_stage(ctx, t0 + timedelta(seconds=policy.base_seconds + 1))
    assert {b.id for b in waiting} <= set(late.finished)

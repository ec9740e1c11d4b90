"""Issue 5 item 3 end to end, against the sandbox with the unmodified SDKs.

Deadline escape: batches stuck ``PENDING`` (fault ``stuck=1``) whose requests' deadline comes
near are cancelled at the provider (Gemini at once; OpenAI through ``cancelling``), and every
request ends with exactly one result, from the interactive lane, billed once.

Shrink and re-plan: an OpenAI batch accepted, then ``failed`` with ``token_limit_exceeded``,
teaches a lower enqueued-token limit; its requests are re-planned as smaller batches (without
spending an attempt) and complete; with a real queue limit in the sandbox, batches wait for
in-flight ones to finish instead of being refused again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from planner.config import load_config
from planner.pipeline.collect import run_collect_stage
from planner.pipeline.context import StageContext
from planner.pipeline.intake import ingest_all
from planner.pipeline.plan_stage import run_plan_stage
from planner.runtime import clock as wall
from planner.runtime.runner import run_once
from planner.runtime.wiring import build_context
from planner.sandbox import RunningSandbox, serve
from planner.sandbox.kernel import Limits
from planner.store import batches as store_batches
from planner.store import limits as store_limits
from planner.store.tables import BATCH, ENQUEUED_LIMIT, REQUEST

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
  gemini: {kind: gemini}
sources:
  spool: {kind: jsonl_dir, path: spool, settle: 0s, sink: out}
sinks:
  out: {kind: jsonl_dir, path: results}
policies:
  default: {batch_window: 24h, default_deadline: DEADLINE}
metrics: {enabled: false}
"""


def _chat(i: int, words: int = 5) -> dict[str, Any]:
    text = " ".join(f"word{j}" for j in range(words))
    return {
        "custom_id": f"chat-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"q{i} {text}"}],
            "max_tokens": 20,
        },
    }


def _gemini(i: int) -> dict[str, Any]:
    return {
        "key": f"gen-{i}",
        "model": "gemini-2.5-flash",
        "request": {"contents": [{"parts": [{"text": f"q{i}"}]}]},
    }


@pytest.fixture()
def sandboxes() -> Iterator[Callable[..., RunningSandbox]]:
    running: list[RunningSandbox] = []

    def start(**options: Any) -> RunningSandbox:
        sandbox = serve(**options)
        running.append(sandbox)
        return sandbox

    yield start
    for sandbox in running:
        sandbox.stop()


def _workspace(tmp_path: Path, lines: list[dict[str, Any]], deadline: str) -> Path:
    (tmp_path / "spool").mkdir()
    body = "".join(json.dumps(line) + "\n" for line in lines)
    (tmp_path / "spool" / "work.jsonl").write_text(body)
    (tmp_path / "planner.yaml").write_text(CONFIG.replace("DEADLINE", deadline))
    return tmp_path


def _context(workspace: Path, sandbox: RunningSandbox) -> StageContext:
    return build_context(load_config(workspace / "planner.yaml"), sandbox_url=sandbox.url)


def _batches(ctx: StageContext) -> dict[str, tuple[str, Any]]:
    """Batch state and cancel acknowledgement, by model."""
    with ctx.session_factory() as session:
        rows = session.execute(select(BATCH.c.model, BATCH.c.state, BATCH.c.cancel_sent_at)).all()
    return {row.model: (row.state, row.cancel_sent_at) for row in rows}


def _open_requests(ctx: StageContext) -> list[str]:
    with ctx.session_factory() as session:
        return list(
            session.execute(
                select(REQUEST.c.state).where(
                    REQUEST.c.state.notin_(["succeeded", "dead", "rejected"])
                )
            ).scalars()
        )


def _drain(ctx: StageContext, passes: int = 8) -> None:
    """``planner run --once`` until no request is open (or the passes run out)."""
    for _ in range(passes):
        run_once(ctx)
        if not _open_requests(ctx):
            break
    assert _open_requests(ctx) == []


def _results(workspace: Path) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((workspace / "results").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            results.setdefault(record["id"], []).append(record)
    dead_dir = workspace / "results" / "dead"
    dead = [
        json.loads(line)["id"]
        for path in (sorted(dead_dir.glob("*.jsonl")) if dead_dir.is_dir() else [])
        for line in path.read_text().splitlines()
    ]
    return results, dead


def _ledger(sandbox: RunningSandbox) -> dict[str, Any]:
    data = httpx.get(sandbox.url + "/_sandbox/ledger").json()
    assert isinstance(data, dict)
    return data


def test_stuck_batches_escape_to_interactive_when_the_deadline_comes_near(
    tmp_path: Path, sandboxes: Callable[..., RunningSandbox]
) -> None:
    # every job stays pending; a frozen sandbox clock lets OpenAI's "cancelling" be watched
    sandbox = sandboxes(speed=10.0, manual_clock=True, faults="stuck=1")
    keys = [f"chat-{i}" for i in range(3)] + [f"gen-{i}" for i in range(3)]
    lines = [_chat(i) for i in range(3)] + [_gemini(i) for i in range(3)]
    workspace = _workspace(tmp_path, lines, "30h")  # 30 h > the 24 h batch window: batch
    ctx = _context(workspace, sandbox)
    t0 = wall.utc_now()  # the spool's files must look settled
    clock = {"now": t0}

    def now() -> datetime:
        return clock["now"]

    run_once(ctx, now)
    assert _batches(ctx) == {
        "gpt-4o-mini": ("submitted", None),
        "gemini-2.5-flash": ("submitted", None),
    }
    # 29 h in: 1 h left, more than the 27 min the way out needs -> keep waiting
    clock["now"] = t0 + timedelta(hours=29)
    run_once(ctx, now)
    assert {state for state, _ in _batches(ctx).values()} == {"submitted"}

    # 29 h 40 min in: 20 min left -> cancel both. Gemini is cancelled at once and its
    # requests are back in the queue; OpenAI is "cancelling" (read as running) for a while
    clock["now"] = t0 + timedelta(hours=29, minutes=40)
    run_once(ctx, now)
    states = _batches(ctx)
    assert states["gemini-2.5-flash"][0] == "collected"
    assert states["gpt-4o-mini"][0] == "running"
    assert all(sent == clock["now"] for _, sent in states.values())

    sandbox.state.clock.advance(60)  # OpenAI's cancelling is over
    for _ in range(4):
        run_once(ctx, now)
        if not _open_requests(ctx):
            break
    assert _open_requests(ctx) == []
    assert {state for state, _ in _batches(ctx).values()} == {"collected"}
    with ctx.session_factory() as session:
        attempts = set(session.execute(select(REQUEST.c.attempts)).scalars())
    assert attempts == {1}  # the cancelled batch's attempt was given back: only interactive

    results, dead = _results(workspace)
    assert sorted(results) == sorted(keys) and dead == []
    assert all(len(records) == 1 for records in results.values())
    assert {records[0]["lane"] for records in results.values()} == {"interactive"}
    ledger = _ledger(sandbox)
    # nothing ran in a batch; six interactive calls were billed, each once (the adapters do
    # not send our key on interactive calls, so the sandbox keys them by call)
    assert ledger["requests"] and all(r["lanes"] == {"interactive": 1} for r in ledger["requests"])
    assert len(ledger["requests"]) == len(keys)
    # one batch per model was ever created, and both were cancelled (not re-sent)
    ours = [b for b in ledger["batches"] if b["our_id"]]
    assert len(ours) == 2
    assert {b["state"] for b in ours} == {"cancelled"}


def test_a_token_limit_failure_is_re_planned_smaller_and_completes(
    tmp_path: Path, sandboxes: Callable[..., RunningSandbox]
) -> None:
    # the first OpenAI batch is accepted, then fails with token_limit_exceeded
    sandbox = sandboxes(speed=0.0, faults="token_limit=0,token_limit_first=1,token_limit_on=openai")
    keys = [f"chat-{i}" for i in range(8)]
    workspace = _workspace(tmp_path, [_chat(i) for i in range(8)], "48h")
    ctx = _context(workspace, sandbox)

    _drain(ctx)

    results, dead = _results(workspace)
    assert sorted(results) == keys and dead == []
    assert all(len(r) == 1 and r[0]["lane"] == "batch" for r in results.values())
    ledger = _ledger(sandbox)
    ours = [b for b in ledger["batches"] if b["our_id"]]
    first, rest = ours[0], ours[1:]
    assert first["state"] == "failed" and first["requests"] == 8 and first["billed"] == 0
    # nothing was in flight: the limit learned is half the refused batch, so it is split
    assert len(rest) >= 2
    assert all(b["state"] == "succeeded" and b["requests"] < 8 for b in rest)
    assert sum(b["requests"] for b in rest) == 8
    billed = {r["key"]: r for r in ledger["requests"]}
    assert all(billed[key]["times_billed"] == 1 for key in keys)
    with ctx.session_factory() as session:
        learned = session.execute(select(ENQUEUED_LIMIT)).one()
        first_tokens = session.execute(
            select(BATCH.c.est_input_tokens).where(BATCH.c.id == first["our_id"])
        ).scalar_one()
        sizes = session.execute(
            select(BATCH.c.est_input_tokens).where(BATCH.c.id != first["our_id"])
        ).scalars()
        attempts = set(session.execute(select(REQUEST.c.attempts)).scalars())
    assert (learned.provider, learned.model) == ("openai", "gpt-4o-mini")
    assert learned.tokens == first_tokens // 2
    assert all(size <= learned.tokens for size in sizes)
    assert attempts == {1}  # the refused attempt was given back


def test_a_real_queue_limit_waits_for_in_flight_batches(
    tmp_path: Path, sandboxes: Callable[..., RunningSandbox]
) -> None:
    """The sandbox enforces a small gpt-4o-mini queue; after the first refusal, batches are
    only planned while the queue (as learned) has room, so none is refused twice in a row."""
    sandbox = sandboxes(
        speed=10.0, manual_clock=True, limits=Limits(enqueued_tokens={"gpt-4o-mini": 300})
    )
    keys = [f"chat-{i}" for i in range(12)]
    workspace = _workspace(tmp_path, [_chat(i, words=20) for i in range(12)], "48h")
    ctx = _context(workspace, sandbox)

    for _ in range(30):
        run_once(ctx)
        sandbox.state.clock.advance(40)  # whatever was accepted finishes
        if not _open_requests(ctx):
            break
    assert _open_requests(ctx) == []

    results, dead = _results(workspace)
    assert sorted(results) == sorted(keys) and dead == []
    assert all(len(r) == 1 and r[0]["lane"] == "batch" for r in results.values())
    ledger = _ledger(sandbox)
    states = [b["state"] for b in ledger["batches"] if b["our_id"]]
    # 12 x ~49 tokens is over 300: refused once; the limit learned is half of it, and the
    # halves are sent one after the other (both at once would be over 300 again)
    assert states == ["failed", "succeeded", "succeeded"]
    assert all(r["times_billed"] == 1 for r in ledger["requests"])


def test_a_create_time_refusal_recorded_by_submit_is_re_planned(
    tmp_path: Path, sandboxes: Callable[..., RunningSandbox]
) -> None:
    """Gemini's path: the create is refused (429 RESOURCE_EXHAUSTED, nothing at the provider),
    submit marks the batch failed and calls ``learn_from_token_limit``; collect then sends the
    requests back without spending an attempt and does not learn a second time."""
    sandbox = sandboxes(speed=0.0)
    workspace = _workspace(tmp_path, [_gemini(i) for i in range(4)], "48h")
    ctx = _context(workspace, sandbox)
    now = wall.utc_now()
    ingest_all(ctx.sources, ctx.session_factory, now)
    run_plan_stage(ctx.planner, ctx.session_factory, now, ctx.plan_chunk)
    with ctx.session_factory() as session, session.begin():
        (batch,) = store_batches.batches_in(session, ("planned",))
        store_batches.transition_batch(session, batch.id, ("planned",), "uploading", now)
        store_batches.transition_batch(
            session,
            batch.id,
            ("uploading",),
            "failed",
            now,
            reason="rejected at submit",
            error_message="429 RESOURCE_EXHAUSTED: Enqueued token limit reached for gemini",
        )
        learned = store_limits.learn_from_token_limit(session, batch.id, now)
    assert learned == max(1, batch.est_input_tokens // 2)

    later = now + timedelta(minutes=1)
    collected = run_collect_stage(ctx, later)
    assert collected.retried == 4 and collected.dead == 0
    assert [b.id for b in collected.token_limited] == [batch.id]  # counted in the metrics
    with ctx.session_factory() as session:
        rows = session.execute(select(REQUEST.c.state, REQUEST.c.attempts)).all()
        limit = session.execute(select(ENQUEUED_LIMIT.c.tokens, ENQUEUED_LIMIT.c.learned_at)).one()
        state = session.execute(select(BATCH.c.state).where(BATCH.c.id == batch.id)).scalar()
    assert {(row.state, row.attempts) for row in rows} == {("queued", 0)}
    assert (limit.tokens, limit.learned_at) == (learned, now)  # learned once, by submit
    assert state == "collected"

    # the next passes send them in batches under the learned limit, and they complete
    for _ in range(6):
        run_once(ctx)
        if not _open_requests(ctx):
            break
    results, dead = _results(workspace)
    assert sorted(results) == [f"gen-{i}" for i in range(4)] and dead == []
    with ctx.session_factory() as session:
        sizes = session.execute(
            select(BATCH.c.est_input_tokens).where(BATCH.c.id != batch.id)
        ).scalars()
        assert all(size <= learned for size in sizes)


def test_a_gemini_create_refused_for_the_queue_is_split_through_the_real_submit(
    tmp_path: Path, sandboxes: Callable[..., RunningSandbox]
) -> None:
    """The same path end to end: the sandbox answers the first Gemini create with 429
    RESOURCE_EXHAUSTED "Enqueued token limit reached"; the submit stage learns the limit, and
    the requests complete in smaller batches, each billed once, without spending an attempt."""
    sandbox = sandboxes(speed=0.0, faults="token_limit=0,token_limit_first=1,token_limit_on=gemini")
    keys = [f"gen-{i}" for i in range(6)]
    workspace = _workspace(tmp_path, [_gemini(i) for i in range(6)], "48h")
    ctx = _context(workspace, sandbox)

    _drain(ctx)

    results, dead = _results(workspace)
    assert sorted(results) == keys and dead == []
    assert all(len(r) == 1 and r[0]["lane"] == "batch" for r in results.values())
    ledger = _ledger(sandbox)
    assert all(r["times_billed"] == 1 for r in ledger["requests"] if r["key"] in keys)
    ours = [b for b in ledger["batches"] if b["our_id"]]
    assert len(ours) >= 2 and all(b["requests"] < 6 for b in ours)  # the refused one never ran
    with ctx.session_factory() as session:
        learned = session.execute(select(ENQUEUED_LIMIT)).one()
        refused = session.execute(
            select(BATCH.c.est_input_tokens).where(BATCH.c.state == "collected")
        ).scalars()
        attempts = set(session.execute(select(REQUEST.c.attempts)).scalars())
    assert (learned.provider, learned.model) == ("gemini", "gemini-2.5-flash")
    assert learned.tokens < max(refused)
    assert attempts == {1}

"""The interactive lane sends each request at most once: its outbox, end to end.

The real SDKs talk to the sandbox, which (in sandbox mode) bills every interactive call under
the request's key, so its ledger shows how often each request was billed.

- What a stopped process left in the outbox is settled by the next pass: an answer it had
  recorded is delivered (billed once, one result line); a send it made without recording the
  answer is dead-lettered as ``unknown_outcome`` and not sent again; a send a live process on
  another host still holds is left alone until its lease runs out.
- A call whose answer is lost on the way back (the sandbox carries it out, then holds the
  answer past the client's timeout, or cuts the connection) is an unknown outcome too: one
  bill, one dead-letter line, never a second call. A call that never connected stays in its
  lane and is sent on a later pass.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from planner.config import load_config
from planner.core.states import RequestState
from planner.pipeline.context import StageContext
from planner.pipeline.intake import ingest_all
from planner.pipeline.interactive import (
    SEND_LEASE,
    UNKNOWN_OUTCOME,
    encode_answer,
    run_interactive_stage,
)
from planner.pipeline.plan_stage import run_plan_stage
from planner.providers.base import BatchLine
from planner.runtime import clock
from planner.runtime.wiring import build_context
from planner.sandbox import RunningSandbox
from planner.sandbox.faults import FaultPlan
from planner.store import requests, sends
from tests.integration.test_run_once import CONFIG as RUN_ONCE_CONFIG
from tests.integration.test_run_once import ledger_of, read_sink

URGENT = 4
# the run-once suite's configuration, with a client timeout short enough for a held answer
CONFIG = RUN_ONCE_CONFIG.replace("openai: {kind: openai}", "openai: {kind: openai, timeout: 2s}")
assert CONFIG != RUN_ONCE_CONFIG


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = [{"id": f"u{i}", "prompt": f"Answer now {i}.", "deadline": "1h"} for i in range(URGENT)]
    (spool / "urgent.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "planner.yaml").write_text(CONFIG)
    return tmp_path


def planned(workspace: Path, url: str) -> StageContext:
    """A context on ``url`` with every urgent line ingested and sent to the interactive lane."""
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url=url)
    ingest_all(ctx.sources, ctx.session_factory, clock.utc_now())
    run_plan_stage(ctx.planner, ctx.session_factory, clock.utc_now(), ctx.plan_chunk)
    with ctx.session_factory() as s:
        states = {
            r.request.key: r.state for r in requests.queued_for_planning(s, states=sends.SENDABLE)
        }
    assert states == {f"u{i}": RequestState.INTERACTIVE for i in range(URGENT)}
    return ctx


def stage(ctx: StageContext, later: timedelta = timedelta(0)) -> Any:
    return run_interactive_stage(
        ctx, clock.utc_now() + later, sleep=time.sleep, clock=clock.monotonic
    )


def billed(sandbox: RunningSandbox) -> dict[str, int]:
    return {
        r["key"]: r["lanes"].get("interactive", 0)
        for r in ledger_of(sandbox)["requests"]
        if r["lanes"].get("interactive")
    }


def by_key(ctx: StageContext) -> dict[str, Any]:
    with ctx.session_factory() as s:
        return {r.request.key: r for r in requests.load(s, list(range(1, URGENT + 1)))}


def dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_stopped_process_s_sends_are_settled_without_a_second_call(
    workspace: Path, sandbox_factory: Any
) -> None:
    sandbox = sandbox_factory()
    ctx = planned(workspace, sandbox.url)
    rows = by_key(ctx)
    gone = f"{socket.gethostname()}:{dead_pid()}:old"
    elsewhere = "another-host:4242:live"
    provider = ctx.providers["openai"]
    now = clock.utc_now()

    def send_as(owner: str, key: str, *, record: bool) -> None:
        stored = rows[key]
        with ctx.session_factory() as s, s.begin():
            assert sends.begin(s, stored.id, stored.attempts, owner, now, SEND_LEASE)
        answer = provider.call_interactive(BatchLine.from_request(stored.request), flex=False)
        if record:
            with ctx.session_factory() as s, s.begin():
                assert sends.answer(s, stored.id, owner, encode_answer(answer), now)

    send_as(gone, "u0", record=True)  # answered, then died before delivering
    send_as(gone, "u1", record=False)  # died between the call and its commit
    with ctx.session_factory() as s, s.begin():  # a live process elsewhere is about to send
        assert sends.begin(s, rows["u2"].id, rows["u2"].attempts, elsewhere, now, SEND_LEASE)
    assert billed(sandbox) == {"u0": 1, "u1": 1}

    first = stage(ctx)
    assert (first.recovered, first.unknown) == (2, {"openai": 1})
    results, dead = read_sink(workspace / "results")
    assert sorted(results) == ["u0", "u3"] and sorted(dead) == ["u1"]
    assert [len(v) for v in (*results.values(), *dead.values())] == [1, 1, 1]
    assert dead["u1"][0]["error"]["code"] == UNKNOWN_OUTCOME
    assert "may have answered and billed" in dead["u1"][0]["error"]["message"]
    assert results["u0"][0]["usage"]["input_tokens"] > 0 and results["u0"][0]["cost_usd"]
    assert billed(sandbox) == {"u0": 1, "u1": 1, "u3": 1}, "nothing was sent twice"
    assert by_key(ctx)["u2"].state is RequestState.INTERACTIVE, "a live send is left alone"

    again = stage(ctx)  # the next pass, well within the lease: still nothing for u2
    assert (again.succeeded, again.dead, again.recovered) == (0, 0, 0)
    with ctx.session_factory() as s:
        assert [r.request_id for r in sends.load(s)] == [rows["u2"].id]

    expired = stage(ctx, later=SEND_LEASE + timedelta(minutes=1))
    assert (expired.recovered, expired.unknown) == (1, {"openai": 1})
    results, dead = read_sink(workspace / "results")
    assert sorted(dead) == ["u1", "u2"] and sorted(results) == ["u0", "u3"]
    assert billed(sandbox) == {"u0": 1, "u1": 1, "u3": 1}, "u2 was never sent by anyone"
    states = {k: r.state for k, r in by_key(ctx).items()}
    assert states == {
        "u0": RequestState.SUCCEEDED,
        "u1": RequestState.DEAD,
        "u2": RequestState.DEAD,
        "u3": RequestState.SUCCEEDED,
    }
    with ctx.session_factory() as s:
        assert sends.load(s) == []


@pytest.mark.parametrize("fault", ["timeout=1,timeout_sleep=6", "drop=1"])
def test_a_lost_answer_is_billed_once_and_dead_lettered(
    workspace: Path, sandbox_factory: Any, fault: str
) -> None:
    sandbox = sandbox_factory(f"{fault},{fault.split('=')[0]}_on=openai.generate")
    ctx = planned(workspace, sandbox.url)
    first = stage(ctx)
    assert (first.succeeded, first.dead, first.unknown) == (0, URGENT, {"openai": URGENT})
    results, dead = read_sink(workspace / "results")
    assert results == {} and sorted(dead) == [f"u{i}" for i in range(URGENT)]
    assert {d[0]["error"]["code"] for d in dead.values()} == {UNKNOWN_OUTCOME}
    assert billed(sandbox) == {f"u{i}": 1 for i in range(URGENT)}
    stage(ctx)
    assert billed(sandbox) == {f"u{i}": 1 for i in range(URGENT)}, "never sent again"


def test_the_operator_can_requeue_unknown_outcomes(workspace: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory("drop=1,drop_on=openai.generate")
    ctx = planned(workspace, sandbox.url)
    stage(ctx)
    sandbox.state.faults = FaultPlan()  # the network is fine again
    config = str(workspace / "planner.yaml")
    listed = cli("requeue", "-c", config, "--reason", "unknown_outcome", "--dry-run", "--json")
    assert listed["requeued"] == 0 and len(listed["requests"]) == URGENT
    assert sorted(r["key"] for r in listed["requests"]) == [f"u{i}" for i in range(URGENT)]
    done = cli("requeue", "-c", config, "--reason", "unknown_outcome", "--json")
    assert done["requeued"] == URGENT
    assert cli("requeue", "-c", config, "--reason", "unknown_outcome", "--json")["requeued"] == 0
    run_plan_stage(ctx.planner, ctx.session_factory, clock.utc_now(), ctx.plan_chunk)
    again = stage(ctx)
    assert (again.succeeded, again.dead) == (URGENT, 0)
    results, dead = read_sink(workspace / "results")
    assert sorted(results) == sorted(dead) == [f"u{i}" for i in range(URGENT)]
    # what the dead-letter line warned of: the lost first answers were billed too
    assert billed(sandbox) == {f"u{i}": 2 for i in range(URGENT)}
    assert {r.attempts for r in by_key(ctx).values()} == {2}


def cli(*args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "planner", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_call_that_never_connected_stays_in_its_lane(workspace: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url=closed)
    ingest_all(ctx.sources, ctx.session_factory, clock.utc_now())
    run_plan_stage(ctx.planner, ctx.session_factory, clock.utc_now(), ctx.plan_chunk)
    result = stage(ctx)
    assert (result.succeeded, result.dead, result.deferred) == (0, 0, URGENT)
    assert {r.state for r in by_key(ctx).values()} == {RequestState.INTERACTIVE}
    with ctx.session_factory() as s:
        assert sends.load(s) == [], "nothing left: the requests are free to send later"

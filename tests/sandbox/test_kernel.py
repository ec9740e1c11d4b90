"""The sandbox kernel: clock, job phases, limits, ledger, fault spec, token rule, entry points."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.runtime.sandbox_child import spawn
from planner.sandbox import (
    FaultPlan,
    FaultSpecError,
    Job,
    JobFault,
    JobLine,
    LimitExceeded,
    Limits,
    RunningSandbox,
    SandboxClock,
    SandboxState,
    serve,
)
from planner.sandbox.faults import parse_spec
from planner.sandbox.kernel import Ledger, our_id_from_display_name
from planner.sandbox.usage import (
    count_tokens,
    fake_completion,
    fake_embedding,
    prompt_tokens,
    thoughts_tokens,
)


def _job(
    state: SandboxState,
    *,
    s: float = 10,
    fault: JobFault | None = None,
    n: int = 4,
    inline: bool = False,
) -> Job:
    return Job(
        id=state.new_id("batch_"),
        surface="test",
        kind="generate",
        model="models/gemini-2.5-flash",
        lines=[JobLine(key=f"k{i}", request={"contents": "x"}) for i in range(n)],
        created_at=state.clock.now(),
        seconds_per_state=s,
        fault=fault,
        inline=inline,
    )


# -- clock and phases -------------------------------------------------------------------------
def test_manual_clock_only_moves_when_advanced() -> None:
    clock = SandboxClock(5, manual=True)
    start = clock.now()
    assert clock.now() == start
    clock.advance(7.5)
    assert clock.now() == start + 7.5
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


@pytest.mark.parametrize(
    ("fault", "at", "phase"),
    [
        # S = 10: pending [0,10), running [10,20), finalizing [20,30), terminal from 30
        (None, 0, "pending"),
        (None, 10, "running"),
        (None, 25, "finalizing"),
        (None, 30, "succeeded"),
        (JobFault("fail"), 9, "pending"),
        (JobFault("fail"), 10, "failed"),
        (JobFault("expire", 0.5), 30, "expired"),
        (JobFault("cancel", 0.5), 30, "cancelled"),
        (JobFault("stuck"), 48 * 3600 - 1, "pending"),
        (JobFault("stuck"), 48 * 3600, "expired"),
    ],
)
def test_job_phases_follow_the_clock(fault: JobFault | None, at: float, phase: str) -> None:
    state = SandboxState(clock=SandboxClock(10, manual=True))
    job = _job(state, fault=fault)
    assert job.phase(job.created_at + at) == phase


def test_cancel_goes_through_cancelling_unless_grace_is_zero() -> None:
    state = SandboxState(clock=SandboxClock(10, manual=True))
    job = _job(state)
    t0 = job.created_at
    state.request_cancel(job, t0 + 15)  # half-way through running
    assert job.phase(t0 + 15) == "cancelling"
    assert job.phase(t0 + 25) == "cancelled"
    assert job.done_fraction(t0 + 25) == 0.5
    instant = _job(state)
    instant.cancel_grace = 0
    state.request_cancel(instant, t0 + 1)
    assert instant.phase(t0 + 1) == "cancelled"


@pytest.mark.parametrize("s", [0, 10])
def test_a_stuck_job_cancelled_ran_nothing(s: float) -> None:
    """Stuck jobs never leave pending, whatever the speed: a cancel finds no line done."""
    state = SandboxState(clock=SandboxClock(0, manual=True))
    job = _job(state, s=s, fault=JobFault("stuck"))
    t0 = job.created_at
    state.request_cancel(job, t0 + 100)
    assert job.phase(t0 + 100 + s) == "cancelled"
    assert job.done_fraction(t0 + 100 + s) == 0.0
    never = _job(state, s=s, fault=JobFault("stuck"))  # and when it expires, none ran either
    assert never.phase(never.created_at + 48 * 3600) == "expired"
    assert never.done_fraction(never.created_at + 48 * 3600) == 0.0


def test_cancel_after_the_end_is_ignored() -> None:
    state = SandboxState(clock=SandboxClock(0, manual=True))
    job = _job(state, s=0)
    state.request_cancel(job, job.created_at)
    assert job.cancel_requested_at is None
    assert job.phase(job.created_at) == "succeeded"


def test_settle_bills_each_line_once_through_the_surface_hook() -> None:
    state = SandboxState(clock=SandboxClock(0, manual=True))
    calls: list[str] = []

    def hook(st: SandboxState, job: Job) -> list[tuple[str, dict[str, Any]]]:
        calls.append(job.id)
        return [(o.key, {"input_tokens": 2}) for o in job.executed]

    state.settle_hooks["test"] = hook
    job = state.add_job(_job(state, s=0, n=3))
    for _ in range(3):
        state.settle(job, state.clock.now())
    assert calls == [job.id]
    snapshot = state.snapshot()
    assert [(r["key"], r["times_billed"], r["usage"]) for r in snapshot["requests"]] == [
        ("k0", 1, {"input_tokens": 2}),
        ("k1", 1, {"input_tokens": 2}),
        ("k2", 1, {"input_tokens": 2}),
    ]
    assert snapshot["batches"][0]["state"] == "succeeded"


def test_a_settled_job_keeps_its_counts_and_the_ledger_its_records_on_disk() -> None:
    state = SandboxState(clock=SandboxClock(0, manual=True))
    state.ledger = Ledger(memory_keys=2)

    def hook(st: SandboxState, job: Job) -> list[tuple[str, dict[str, Any]]]:
        job.executed[1].fault = "error"  # one line answered with an error, the rest billed
        return [(o.key, {"input_tokens": 3}) for o in job.executed if o.fault is None]

    state.settle_hooks["test"] = hook
    file_job = state.add_job(_job(state, s=0, n=4))
    inline_job = state.add_job(_job(state, s=0, n=2, inline=True))
    state.settle_all(state.clock.now())
    assert (file_job.lines, file_job.executed) == ([], [])  # nothing held per line
    assert (file_job.size, file_job.ran, file_job.failed_lines) == (4, 4, 1)
    assert [line.key for line in inline_job.lines] == ["k0", "k1"]  # echoed by its resource
    assert inline_job.executed == [] and (inline_job.size, inline_job.ran) == (2, 2)
    snapshot = state.snapshot()
    assert [(b["requests"], b["billed"]) for b in snapshot["batches"]] == [(4, 4), (2, 2)]
    assert state.ledger.bills.spilled
    assert [(r["key"], r["times_billed"], r["usage"]) for r in snapshot["requests"]] == [
        ("k0", 2, {"input_tokens": 6}),  # both jobs number their lines from k0
        ("k2", 1, {"input_tokens": 3}),
        ("k3", 1, {"input_tokens": 3}),
    ]
    moved = state.ledger.bills
    state.reset()  # the records' file goes with them
    assert not moved.spilled and state.snapshot()["requests"] == []


def test_a_deleted_job_keeps_only_its_counts_once_billed() -> None:
    state = SandboxState(clock=SandboxClock(0, manual=True))

    def hook(st: SandboxState, job: Job) -> list[tuple[str, dict[str, Any]]]:
        job.output = {"inlinedResponses": [{"response": o.key} for o in job.executed]}
        return [(o.key, {"input_tokens": 1}) for o in job.executed]

    state.settle_hooks["test"] = hook
    settled = state.add_job(_job(state, s=0, n=2, inline=True))
    settled.extra["inline_metadata"] = {0: {"key": "k0"}}
    state.settle(settled, state.clock.now())
    assert settled.output and settled.lines  # shown by its resource until deleted
    settled.delete()
    assert (settled.lines, settled.output, settled.extra) == ([], {}, {"seq": 1})
    assert (settled.size, settled.ran) == (2, 2)

    unsettled = _job(state, s=0, n=3, inline=True)
    unsettled.seconds_per_state = 10  # still running when its client deletes it
    state.add_job(unsettled)
    unsettled.delete()
    assert len(unsettled.lines) == 3  # its lines are billed when it ends
    state.clock.advance(30)
    snapshot = state.snapshot()
    assert (unsettled.lines, unsettled.output, unsettled.ran) == ([], {}, 3)
    assert [b["billed"] for b in snapshot["batches"]] == [2, 3]
    billed = {r["key"]: r["times_billed"] for r in snapshot["requests"]}
    assert billed == {"k0": 2, "k1": 2, "k2": 1}


def test_limits_refuse_concurrency_and_enqueued_tokens() -> None:
    state = SandboxState(
        clock=SandboxClock(10, manual=True),
        limits=Limits(max_concurrent_jobs=2, enqueued_tokens={"gemini-2.5-flash": 100}),
    )
    big = _job(state)
    big.enqueued_tokens = 101
    with pytest.raises(LimitExceeded) as caught:
        state.add_job(big)
    assert caught.value.kind == "enqueued_tokens"
    state.add_job(_job(state))
    state.add_job(_job(state))
    with pytest.raises(LimitExceeded) as caught:
        state.add_job(_job(state))
    assert caught.value.kind == "concurrency"
    assert state.limits.enqueued_limit("models/gemini-2.5-flash-001") == 100  # longest prefix
    assert Limits().enqueued_limit("models/gemini-2.5-flash-lite") == 10_000_000


@pytest.mark.parametrize(
    ("name", "our_id"),
    [("planner:plb_1", "plb_1"), ("nightly planner:abc", "abc"), ("other", None), (None, None)],
)
def test_our_id_comes_from_the_display_name(name: str | None, our_id: str | None) -> None:
    assert our_id_from_display_name(name) == our_id


def test_ids_are_deterministic_per_seed() -> None:
    a = SandboxState(faults=FaultPlan.from_spec("seed=3"))
    b = SandboxState(faults=FaultPlan.from_spec("seed=3"))
    assert [a.new_id("", 12) for _ in range(3)] == [b.new_id("", 12) for _ in range(3)]


# -- fault spec -------------------------------------------------------------------------------
def test_full_spec_parses() -> None:
    spec = (
        "rate_limit=0.2,retry_after=3,server_error=0.1,slow=2.5,timeout_rate=0.05,batch_fail=0.1,"
        "batch_expire=0.1,expire_done_fraction=0.5,cancel=0.05,line_error_rate=0.02,"
        "malformed_line_rate=0.01,token_limit=0.1,shuffle_results=1,missing_line_rate=0.01,"
        "seed=42,rate_limit_on=create|gemini.list,rate_limit_first=2,list_lag=30,drop=0.1"
    )
    settings = parse_spec(spec)
    assert settings["rate_limit_on"] == frozenset({"create", "gemini.list"})
    assert settings["drop_rate"] == 0.1 and settings["shuffle_results"] is True
    plan = FaultPlan(settings)
    assert FaultPlan.from_mapping(plan.to_dict()).settings == settings


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rate_limit=2", "between 0 and 1"),
        ("rate_limit", "expected name=value"),
        ("bogus=1", "unknown fault 'bogus'"),
        ("rate_limit_on=nowhere", "unknown target 'nowhere'"),
        ("seed=x", "integer seed"),
        ("slow=-1", "seconds >= 0"),
        ("rate_limit_first=-1", "whole number"),
        ("line_error_rate_on=create", "unknown fault 'line_error_rate_on'"),
    ],
)
def test_bad_specs_name_the_item(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_spec(spec)


def test_decisions_are_deterministic_and_targeted() -> None:
    def run() -> list[Any]:
        plan = FaultPlan.from_spec("rate_limit=0.5,seed=9,rate_limit_on=create")
        return [plan.http_fault("gemini", "create") for _ in range(20)] + [
            plan.http_fault("gemini", "get")
        ]

    first = run()
    assert first == run()
    assert {f.kind for f in first[:20] if f} == {"rate_limit"} and None in first[:20]
    assert first[20] is None


def test_first_n_then_probability() -> None:
    plan = FaultPlan.from_spec("batch_fail_first=2")
    fates = [plan.job_fault(f"job{i}") for i in range(4)]
    assert [f.kind if f else None for f in fates] == ["fail", "fail", None, None]


@given(st.floats(min_value=0, max_value=1))
def test_line_fault_rate_is_a_probability(rate: float) -> None:
    plan = FaultPlan({"line_error_rate": rate})
    hits = sum(plan.line_fault("job", f"k{i}") == "error" for i in range(200))
    if rate == 0:
        assert hits == 0
    if rate == 1:
        assert hits == 200


# -- token rule -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("Hello, world!", 6),  # 4 pieces x 1.3 = 5.2 -> 6
        ("one", 2),  # 1.3 -> 2
        ("a-b c", 6),  # a - b c = 4 pieces -> 5.2 -> 6
        ("...!!!", 2),  # one punctuation run
        ("ten words here and there and more words to count", 13),
    ],
)
def test_count_tokens_examples(text: str, tokens: int) -> None:
    assert count_tokens(text) == tokens


@given(st.text(alphabet=st.characters(max_codepoint=127)) | st.text())
def test_count_tokens_follows_the_regex_rule(text: str) -> None:
    """The ASCII shortcut counts exactly the pieces the documented regex finds."""
    pieces = len(re.findall(r"\w+|[^\w\s]+", text))
    assert count_tokens(text) == -(-pieces * 13 // 10)  # ceil(1.3 x pieces)


def test_prompt_tokens_count_messages_with_overhead() -> None:
    gemini = {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": "Hello,"}, {"text": "world!"}]}],
    }
    assert prompt_tokens(gemini) == (3 + 3) + (6 + 3)
    chat = {"messages": [{"role": "user", "content": "Hello, world!"}]}
    assert prompt_tokens(chat) == 9


@given(
    st.text(max_size=40),
    st.integers(min_value=0, max_value=60),
)
def test_fake_completion_is_deterministic_and_respects_the_cap(prompt: str, cap: int) -> None:
    request = {"contents": prompt, "generationConfig": {"maxOutputTokens": cap}}
    first = fake_completion("models/gemini-2.5-flash", request)
    assert first == fake_completion("models/gemini-2.5-flash", request)
    text, _, output = first
    assert output == count_tokens(text) <= cap


def test_thoughts_and_embeddings() -> None:
    request = {"contents": "x"}
    assert 16 <= thoughts_tokens("models/gemini-2.5-pro", request) < 64
    assert thoughts_tokens("models/gemini-2.5-flash-lite", request) == 0
    budgeted = {"contents": "x", "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}
    assert thoughts_tokens("models/gemini-2.5-flash", budgeted) == 0
    vector = fake_embedding("m", "text", 5)
    assert len(vector) == 5 and abs(sum(v * v for v in vector) - 1) < 1e-4
    assert vector == fake_embedding("m", "text", 5) != fake_embedding("m", "other", 5)


# -- entry points and control endpoints ---------------------------------------------------------
def test_serve_refuses_non_loopback_hosts() -> None:
    with pytest.raises(ValueError, match="loopback"):
        serve("0.0.0.0")


def test_control_endpoints(sandbox: RunningSandbox) -> None:
    url = sandbox.url
    before = httpx.get(f"{url}/_sandbox/clock").json()["now"]
    assert httpx.post(f"{url}/_sandbox/clock/advance", json={"seconds": 30}).json()["now"] == (
        before + 30
    )
    assert httpx.post(f"{url}/_sandbox/clock/advance", json={"seconds": -1}).status_code == 400
    assert httpx.post(f"{url}/_sandbox/clock/speed", json={"seconds_per_state": 2}).json() == {
        "seconds_per_state": 2.0
    }
    assert httpx.post(f"{url}/_sandbox/faults", json={"spec": "seed=4"}).json() == {"seed": 4}
    assert httpx.get(f"{url}/_sandbox/faults").json() == {"seed": 4}
    limits = httpx.post(
        f"{url}/_sandbox/limits",
        json={"max_concurrent_jobs": 3, "enqueued_tokens": {"gemini-2.5-flash": 50}},
    ).json()
    assert limits["max_concurrent_jobs"] == 3
    assert sandbox.state.limits.enqueued_limit("models/gemini-2.5-flash") == 50
    assert httpx.post(f"{url}/_sandbox/limits", json={"bogus": 1}).status_code == 400
    sandbox.state.add_file(surface="gemini", data=b"x")
    assert httpx.post(f"{url}/_sandbox/reset").json() == {"ok": True}
    assert sandbox.state.files == {}
    assert httpx.get(f"{url}/_sandbox/ledger").json() == {"batches": [], "requests": []}


def test_cli_rejects_a_bad_fault_spec_with_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "planner.sandbox", "--port", "0", "--faults", "rate_limit=7"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "rate_limit" in result.stderr and "between 0 and 1" in result.stderr


def test_spawned_sandbox_serves_and_stops_with_its_parent() -> None:
    """``planner run --sandbox`` runs the emulator in a child process on a socket bound first:
    a call made before the child serves waits in the backlog; stop() ends the child at once
    (killed: it holds nothing but memory)."""
    with spawn(speed=0) as child:
        assert httpx.get(f"{child.url}/_sandbox/health", timeout=30).json()["ok"] is True
    assert child.returncode == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)  # reaped, not left behind


def test_spawned_sandbox_ends_when_its_parent_is_killed() -> None:
    script = (
        "import sys, time\n"
        "from planner.runtime.sandbox_child import spawn\n"
        "child = spawn(speed=0)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait(timeout=30)
    for _ in range(300):  # its standard input ends with the parent: it stops by itself
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the sandbox outlived its parent")


def test_module_entry_point_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "planner.sandbox", "--port", "0", "--speed", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("planner sandbox listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        assert httpx.get(f"{url}/_sandbox/health").json()["ok"] is True
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

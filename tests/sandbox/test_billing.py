"""The emulator's per-key billing record (``sandbox/billing.py``) is the same whether it is held
in memory or moved to its database, and a settled job keeps its counts, not its lines."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from planner.sandbox import Job, JobLine, SandboxClock, SandboxState
from planner.sandbox.billing import Bills
from planner.sandbox.kernel import Ledger

USAGE = st.dictionaries(
    st.sampled_from(["input_tokens", "output_tokens", "total_tokens", "thoughts_tokens"]),
    st.integers(0, 10**12) | st.booleans() | st.just("text") | st.none(),
    max_size=4,
)
BILL = st.tuples(
    st.sampled_from(["a", "b", "c", "d", "é/1"]),
    st.sampled_from(["batch", "interactive", "flex"]),
    USAGE,
    st.none() | st.sampled_from(["gpt-4o-mini", "models/gemini-2.5-flash"]),
    st.none() | st.sampled_from(["batch_1", "batches/2"]),
)


def _expected(bills: list[tuple[str, str, dict[str, Any], str | None, str | None]]) -> list[Any]:
    """What the records must say, worked out here bill by bill."""
    records: dict[str, dict[str, Any]] = {}
    for key, lane, usage, model, batch in bills:
        record = records.setdefault(
            key,
            {"key": key, "times_billed": 0, "usage": {}, "lanes": {}, "models": [], "batches": []},
        )
        record["lane"] = lane
        record["times_billed"] += 1
        record["lanes"][lane] = record["lanes"].get(lane, 0) + 1
        for name, value in usage.items():
            if type(value) is int:
                record["usage"][name] = record["usage"].get(name, 0) + value
        if model is not None and model not in record["models"]:
            record["models"].append(model)
        if batch is not None:
            record["batches"].append(batch)
    return list(records.values())


@settings(max_examples=200, deadline=None)
@given(bills=st.lists(BILL, max_size=25), memory_keys=st.sampled_from([0, 1, 2, 3, 1000]))
def test_records_are_the_same_in_memory_and_on_disk(
    bills: list[tuple[str, str, dict[str, Any], str | None, str | None]], memory_keys: int
) -> None:
    held = Bills(memory_keys)
    for key, lane, usage, model, batch in bills:
        held.bill(key, lane, usage, model=model, batch=batch)
    expected = _expected(bills)
    assert list(held.records()) == expected  # same values, same order (first billed first)
    assert len(held) == len(expected)
    assert held.spilled == (len(expected) > memory_keys)
    held.close()


def test_bills_from_many_threads_are_all_counted_once_spilled() -> None:
    held = Bills(memory_keys=5)

    def bill(worker: int) -> None:
        for i in range(200):
            held.bill(f"k{i % 20}", "batch", {"input_tokens": 1}, batch=f"b{worker}")

    threads = [threading.Thread(target=bill, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = list(held.records())
    assert held.spilled and len(records) == 20
    assert {r["times_billed"] for r in records} == {40}
    assert {r["usage"]["input_tokens"] for r in records} == {40}
    assert sum(len(r["batches"]) for r in records) == 800


def _file_job(state: SandboxState, n: int, *, inline: bool) -> Job:
    return Job(
        id=state.new_id("batch_"),
        surface="test",
        kind="generate",
        model="models/gemini-2.5-flash",
        lines=[JobLine(key=f"k{i}", request={"contents": "x"}) for i in range(n)],
        created_at=state.clock.now(),
        seconds_per_state=0,
        inline=inline,
    )


def test_a_settled_job_keeps_its_counts_and_the_ledger_its_records_on_disk() -> None:
    state = SandboxState(clock=SandboxClock(0, manual=True))
    state.ledger = Ledger(memory_keys=2)

    def hook(st: SandboxState, job: Job) -> list[tuple[str, dict[str, Any]]]:
        job.executed[1].fault = "error"  # one line answered with an error, the rest billed
        return [(o.key, {"input_tokens": 3}) for o in job.executed if o.fault is None]

    state.settle_hooks["test"] = hook
    file_job = state.add_job(_file_job(state, 4, inline=False))
    inline_job = state.add_job(_file_job(state, 2, inline=True))
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


def test_a_deleted_job_keeps_only_its_counts_once_billed() -> None:
    state = SandboxState(clock=SandboxClock(0, manual=True))

    def hook(st: SandboxState, job: Job) -> list[tuple[str, dict[str, Any]]]:
        job.output = {"inlinedResponses": [{"response": o.key} for o in job.executed]}
        return [(o.key, {"input_tokens": 1}) for o in job.executed]

    state.settle_hooks["test"] = hook
    settled = state.add_job(_file_job(state, 2, inline=True))
    settled.extra["inline_metadata"] = {0: {"key": "k0"}}
    state.settle(settled, state.clock.now())
    assert settled.output and settled.lines  # shown by its resource until deleted
    settled.delete()
    assert (settled.lines, settled.output, settled.extra) == ([], {}, {"seq": 1})
    assert (settled.size, settled.ran) == (2, 2)

    unsettled = _file_job(state, 3, inline=True)
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

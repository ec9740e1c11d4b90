"""The emulator's per-key billing record (``sandbox/billing.py``) is the same whether it is held
in memory or moved to its database."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from planner.sandbox.billing import Bills

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
    assert held.spilled == (len(expected) > memory_keys)
    held.close()
    assert list(held.records()) == [] and not held.spilled


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

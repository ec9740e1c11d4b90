"""The interactive lane's client-side rate limits, on a fake clock (no real waiting)."""

from __future__ import annotations

from planner.pipeline.interactive import ProviderGates, RateGate


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_requests_per_minute_spaces_calls_evenly() -> None:
    t = FakeTime()
    gate = RateGate(60, t.sleep, t.clock)  # 60/min: one call a second
    for _ in range(4):
        gate.wait()
    assert t.slept == [1.0, 1.0, 1.0]  # the first starts at once, then a second apart


def test_tokens_per_minute_reserves_time_by_size() -> None:
    t = FakeTime()
    gate = RateGate(6000, t.sleep, t.clock)  # 100 tokens a second
    gate.wait(500)  # at once; the next may start 5 s later
    gate.wait(100)
    gate.wait(100)
    assert t.slept == [5.0, 1.0]


def test_no_limit_never_waits() -> None:
    t = FakeTime()
    gates = ProviderGates(RateGate(None, t.sleep, t.clock), RateGate(None, t.sleep, t.clock))
    for _ in range(100):
        gates.wait(10_000)
    assert t.slept == []


def test_both_gates_apply() -> None:
    t = FakeTime()
    gates = ProviderGates(RateGate(60, t.sleep, t.clock), RateGate(600, t.sleep, t.clock))
    gates.wait(20)  # tokens gate: next start 2 s later; requests gate: 1 s later
    gates.wait(20)
    assert sum(t.slept) == 2.0

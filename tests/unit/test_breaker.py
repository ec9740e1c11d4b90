"""core.breaker: closed -> open -> half-open -> closed, driven by values (spec §3.3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.core.breaker import Breaker, BreakerPolicy, CircuitState, Signal, Transition

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = BreakerPolicy(
    threshold=5, base_open_seconds=60, max_open_seconds=900, probe_timeout_seconds=300
)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fail(breaker: Breaker, times: int, at: datetime = T0) -> tuple[Breaker, list[Transition]]:
    transitions: list[Transition] = []
    for _ in range(times):
        breaker, transition = breaker.record(Signal.FAILURE, at, "transient")
        if transition is not None:
            transitions.append(transition)
    return breaker, transitions


def test_five_consecutive_failures_open_it() -> None:
    breaker, transitions = fail(Breaker(POLICY), 4)
    assert breaker.state is CircuitState.CLOSED and breaker.failures == 4 and not transitions
    breaker, transitions = fail(breaker, 1)
    assert breaker.state is CircuitState.OPEN and breaker.is_open
    assert transitions == [
        Transition(CircuitState.CLOSED, CircuitState.OPEN, "failures", T0, s(60))
    ]


def test_an_answer_in_between_resets_the_count() -> None:
    breaker, _ = fail(Breaker(POLICY), 4)
    breaker, transition = breaker.record(Signal.ANSWERED, T0)
    assert transition is None and breaker.failures == 0
    breaker, _ = fail(breaker, 4)
    assert breaker.state is CircuitState.CLOSED
    # an answer on a clean breaker changes nothing
    clean = Breaker(POLICY)
    assert clean.record(Signal.ANSWERED, T0) == (clean, None)


@pytest.mark.parametrize("reason", ["auth", "quota"])
def test_auth_and_quota_open_it_at_once(reason: str) -> None:
    breaker, transition = Breaker(POLICY).record(Signal.TRIP, T0, reason)
    assert breaker.state is CircuitState.OPEN
    assert transition is not None and transition.reason == reason
    assert breaker.retry_at == s(60)


def test_a_trip_without_a_reason_still_says_why() -> None:
    _, transition = Breaker(POLICY).record(Signal.TRIP, T0)
    assert transition is not None and transition.reason == "trip"


def test_open_refuses_until_the_backoff_is_over_then_lets_one_probe_through() -> None:
    breaker, _ = Breaker(POLICY).record(Signal.TRIP, T0, "auth")
    same, allowed, transition = breaker.allow(s(59))
    assert not allowed and transition is None and same is breaker
    half, allowed, transition = breaker.allow(s(60))
    assert allowed and half.state is CircuitState.HALF_OPEN and half.is_open
    assert transition == Transition(
        CircuitState.OPEN, CircuitState.HALF_OPEN, "backoff_over", s(60)
    )
    # the probe is out: nobody else gets through
    again, allowed, transition = half.allow(s(61))
    assert not allowed and transition is None and again is half


def test_a_good_probe_closes_it_and_forgets_the_history() -> None:
    breaker, _ = Breaker(POLICY).record(Signal.TRIP, T0, "auth")
    half, _, _ = breaker.allow(s(60))
    closed, transition = half.record(Signal.ANSWERED, s(61))
    assert closed == Breaker(POLICY)
    assert transition == Transition(CircuitState.HALF_OPEN, CircuitState.CLOSED, "probe_ok", s(61))


def test_a_failed_probe_opens_it_again_for_twice_as_long_up_to_15_minutes() -> None:
    breaker, _ = Breaker(POLICY).record(Signal.TRIP, T0, "auth")
    now = T0
    waits = []
    for _ in range(7):
        assert breaker.retry_at is not None
        waits.append((breaker.retry_at - now).total_seconds())
        now = breaker.retry_at
        half, allowed, _ = breaker.allow(now)
        assert allowed
        breaker, transition = half.record(Signal.FAILURE, now, "transient")
        assert transition is not None and transition.reason == "probe_transient"
        assert transition.old is CircuitState.HALF_OPEN and transition.new is CircuitState.OPEN
    assert waits == [60, 120, 240, 480, 900, 900, 900]


def test_a_failed_probe_without_a_reason() -> None:
    breaker, _ = Breaker(POLICY).record(Signal.TRIP, T0, "auth")
    half, _, _ = breaker.allow(s(60))
    _, transition = half.record(Signal.TRIP, s(60))
    assert transition is not None and transition.reason == "probe_failed"


def test_a_lost_probe_is_replaced_after_its_timeout() -> None:
    breaker, _ = Breaker(POLICY).record(Signal.TRIP, T0, "auth")
    half, _, _ = breaker.allow(s(60))
    _, allowed, _ = half.allow(s(60 + 299))
    assert not allowed
    retried, allowed, transition = half.allow(s(60 + 300))
    assert allowed and transition is None and retried.probe_started == s(360)


def test_stragglers_while_open_change_nothing() -> None:
    breaker, _ = Breaker(POLICY).record(Signal.TRIP, T0, "auth")
    for signal in (Signal.FAILURE, Signal.TRIP):
        assert breaker.record(signal, s(1)) == (breaker, None)


def test_an_answer_while_open_closes_it() -> None:
    """A call that was already running when the breaker opened came back fine: trust it."""
    breaker, _ = Breaker(POLICY).record(Signal.TRIP, T0, "auth")
    closed, transition = breaker.record(Signal.ANSWERED, s(1))
    assert closed.state is CircuitState.CLOSED
    assert transition is not None and transition.old is CircuitState.OPEN
    assert transition.reason == "answered"


def test_closed_always_allows() -> None:
    breaker = Breaker(POLICY)
    assert breaker.allow(T0) == (breaker, True, None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0},
        {"base_open_seconds": 0},
        {"base_open_seconds": 1000, "max_open_seconds": 900},
        {"probe_timeout_seconds": 0},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**kwargs)  # type: ignore[arg-type]


@given(st.lists(st.sampled_from(list(Signal)), max_size=60))
def test_property_open_only_after_a_trip_or_threshold_failures_in_a_row(
    signals: list[Signal],
) -> None:
    """Without time passing (no probe), the breaker is open exactly when a TRIP happened or
    ``threshold`` FAILUREs came in a row at some point before an ANSWERED closed it again."""
    breaker = Breaker(POLICY)
    run = 0
    expect_open = False
    for signal in signals:
        breaker, _ = breaker.record(signal, T0)
        if signal is Signal.ANSWERED:
            run, expect_open = 0, False
        elif not expect_open:
            run += 1 if signal is Signal.FAILURE else 0
            expect_open = signal is Signal.TRIP or run >= POLICY.threshold
            if expect_open:
                run = 0
        assert breaker.is_open is expect_open
        assert breaker.state is not CircuitState.HALF_OPEN
        if breaker.is_open:
            assert breaker.retry_at is not None
            assert breaker.retry_at - T0 <= timedelta(seconds=POLICY.max_open_seconds)

"""The flush triggers (core/flush.py): when the queue is planned before the scheduled pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.core.flush import (
    DeadlineRules,
    FlushReason,
    FlushRules,
    QueueSummary,
    SourceDeadlines,
    flush_reasons,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NIGHTLY = NOW + timedelta(hours=14)  # a cron at 02:00
RULES = FlushRules(
    max_requests=10_000,
    max_tokens=5_000_000,
    max_wait=timedelta(hours=1),
    default=DeadlineRules(timedelta(hours=24), timedelta(days=2)),
)


def queue(**changes: object) -> QueueSummary:
    """One source's queue; ``earliest_deadline`` / ``earliest_undated`` go to its deadlines."""
    base: dict[str, object] = {
        "count": 10,
        "tokens": 1_000,
        "oldest_waiting": NOW - timedelta(minutes=5),
    }
    group: dict[str, object] = {
        "earliest_deadline": None,
        "earliest_undated": NOW - timedelta(minutes=5),
    }
    for name in list(changes):
        if name in group:
            group[name] = changes.pop(name)
    base.update(changes)
    base["deadlines"] = (SourceDeadlines("spool", **group),)  # type: ignore[arg-type]
    return QueueSummary(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        # a fresh, small queue, undated: deadline = received + 2d = 12:00 + 47h55m, beyond the
        # horizon 02:00 + 24h + 30m: waits for the nightly pass
        (queue(), []),
        (queue(count=0), []),
        (queue(count=10_000), [FlushReason.COUNT]),
        (queue(tokens=5_000_000), [FlushReason.TOKENS]),
        (queue(oldest_waiting=NOW - timedelta(hours=1)), [FlushReason.WAIT]),
        # own deadline tomorrow 20:00 (32 h away): at 02:00 only 18 h would be left, less than
        # the 24 h window, so planned now it goes by batch (horizon = 02:00 + 24h30m = 02:30+1d)
        (queue(earliest_deadline=NOW + timedelta(hours=32)), [FlushReason.DEADLINE]),
        # deadline in 3 days: the nightly pass still has the whole window
        (queue(earliest_deadline=NOW + timedelta(days=3)), []),
        # undated but received 30 h ago: 2d default leaves 18 h: before the horizon
        (queue(earliest_undated=NOW - timedelta(hours=30)), [FlushReason.DEADLINE]),
    ],
)
def test_reasons(summary: QueueSummary, expected: list[FlushReason]) -> None:
    assert flush_reasons(summary, RULES, NOW, NIGHTLY) == expected


def test_no_default_deadline_means_undated_requests_never_trigger() -> None:
    rules = FlushRules(None, None, timedelta(days=9), DeadlineRules(timedelta(hours=24), None))
    assert (
        flush_reasons(queue(earliest_undated=NOW - timedelta(days=30)), rules, NOW, NIGHTLY) == []
    )


def test_an_unchanged_queue_after_an_idle_pass_is_not_planned_again() -> None:
    full = queue(count=20_000, oldest_waiting=NOW - timedelta(hours=5))
    assert flush_reasons(full, RULES, NOW, NIGHTLY) == [FlushReason.COUNT, FlushReason.WAIT]
    assert flush_reasons(full, RULES, NOW, NIGHTLY, unchanged_since_idle_pass=True) == []


def test_after_an_idle_pass_only_a_deadline_that_flips_the_lane_counts() -> None:
    # deferred (queue full) with 30 h left: still batch-bound, nothing new to decide
    waiting = queue(count=20_000, earliest_deadline=NOW + timedelta(hours=30))
    assert flush_reasons(waiting, RULES, NOW, NIGHTLY, unchanged_since_idle_pass=True) == []
    # 24 h left: no batch window any more; planned now, they go interactive in time
    closing = queue(count=20_000, earliest_deadline=NOW + timedelta(hours=24))
    assert flush_reasons(closing, RULES, NOW, NIGHTLY, unchanged_since_idle_pass=True) == [
        FlushReason.DEADLINE
    ]


def test_without_a_next_pass_any_deadline_triggers() -> None:
    dated = queue(earliest_deadline=NOW + timedelta(days=30))
    assert flush_reasons(dated, RULES, NOW, None) == [FlushReason.DEADLINE]


@given(
    st.integers(0, 10_000_000),
    st.timedeltas(timedelta(0), timedelta(days=10)),
    st.timedeltas(timedelta(0), timedelta(days=10)),
)
def test_a_later_next_pass_never_removes_the_deadline_reason(
    hours_ahead: int, deadline_in: timedelta, pass_in: timedelta
) -> None:
    summary = queue(earliest_deadline=NOW + deadline_in)
    sooner = flush_reasons(summary, RULES, NOW, NOW + pass_in)
    later = flush_reasons(summary, RULES, NOW, NOW + pass_in + timedelta(seconds=hours_ahead))
    if FlushReason.DEADLINE in sooner:
        assert FlushReason.DEADLINE in later


# two policies: "fast" (6 h window) and the default (24 h); each source by its own policy
MIXED = FlushRules(
    max_requests=None,
    max_tokens=None,
    max_wait=timedelta(days=9),
    default=DeadlineRules(timedelta(hours=24), None),
    by_source={"reports": DeadlineRules(timedelta(hours=6), None)},
)


def mixed(source: str, deadline_in: timedelta) -> QueueSummary:
    return QueueSummary(
        count=20_000,
        tokens=1,
        oldest_waiting=NOW,
        deadlines=(SourceDeadlines(source, NOW + deadline_in, None),),
    )


def test_after_an_idle_pass_each_source_is_judged_by_its_own_window() -> None:
    # a 6 h-window request with 20 h left still goes by batch: deferred for room, nothing new
    # to decide, so it is not re-planned every check (the 24 h window would have said so)
    deferred = mixed("reports", timedelta(hours=20))
    assert flush_reasons(deferred, MIXED, NOW, NIGHTLY, unchanged_since_idle_pass=True) == []
    # the same 20 h under the 24 h default: no window left, it must go interactive now
    flipping = mixed("spool", timedelta(hours=20))
    assert flush_reasons(flipping, MIXED, NOW, NIGHTLY, unchanged_since_idle_pass=True) == [
        FlushReason.DEADLINE
    ]
    # and the 6 h source once its own window is gone
    closing = mixed("reports", timedelta(hours=6))
    assert flush_reasons(closing, MIXED, NOW, NIGHTLY, unchanged_since_idle_pass=True) == [
        FlushReason.DEADLINE
    ]


def test_the_deadline_horizon_uses_the_source_s_window() -> None:
    # next pass in 14 h: the 6 h source's horizon is 14 + 6 + 0.5 = 20.5 h, the default's 38.5 h
    assert flush_reasons(mixed("reports", timedelta(hours=30)), MIXED, NOW, NIGHTLY) == []
    assert flush_reasons(mixed("spool", timedelta(hours=30)), MIXED, NOW, NIGHTLY) == [
        FlushReason.DEADLINE
    ]
    assert flush_reasons(mixed("reports", timedelta(hours=20)), MIXED, NOW, NIGHTLY) == [
        FlushReason.DEADLINE
    ]

"""Budgets as pure arithmetic, and the policy's budget rule, on a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from planner.core.budget import (
    AtCap,
    BudgetBook,
    BudgetKey,
    BudgetRules,
    Period,
    Scope,
    Window,
    fraction_used,
    reserve,
    settle,
    window_start,
)
from planner.core.cost import LaneCosts
from planner.core.model import Endpoint, Lane, Request, TokenEstimate
from planner.core.policy import BudgetRoom, PolicyRules, Reason, decide

D = Decimal
H = timedelta(hours=1)
NOW = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 CET; at 02:00 local the clocks jump
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("period", "tz", "start"),
    [
        (Period.DAY, UTC, datetime(2026, 3, 29, tzinfo=UTC)),
        (Period.MONTH, UTC, datetime(2026, 3, 1, tzinfo=UTC)),
        # 01:30 in Berlin (UTC+1 until 02:00 local): the day began at 23:00 UTC the day before
        (Period.DAY, BERLIN, datetime(2026, 3, 28, 23, tzinfo=UTC)),
        (Period.MONTH, BERLIN, datetime(2026, 2, 28, 23, tzinfo=UTC)),
        # 20:30 on the 28th in New York (UTC-4 since 8 March): day began 04:00 UTC on the 28th
        (Period.DAY, NEW_YORK, datetime(2026, 3, 28, 4, tzinfo=UTC)),
        # March 1st in New York was still EST (UTC-5)
        (Period.MONTH, NEW_YORK, datetime(2026, 3, 1, 5, tzinfo=UTC)),
    ],
)
def test_window_starts_where_the_budget_zone_begins_its_day(
    period: Period, tz: ZoneInfo, start: datetime
) -> None:
    assert window_start(period, NOW, tz) == start


def test_window_start_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        window_start(Period.DAY, datetime(2026, 3, 29), UTC)  # noqa: DTZ001 (naive on purpose)


def test_reserve_then_settle_turns_the_reservation_into_the_actual_cost() -> None:
    w = Window(limit=D("5.00"), spent=D("1.00"))
    w = reserve(w, D("0.75"))  # upper bound of a planned request
    assert (w.spent, w.reserved, w.remaining) == (D("1.00"), D("0.75"), D("3.25"))
    w = settle(w, D("0.75"), D("0.40"))  # billed less than its upper bound
    assert (w.spent, w.reserved, w.remaining) == (D("1.40"), D("0"), D("3.60"))
    assert fraction_used(w) == D("0.28")  # 1.40 / 5.00
    with pytest.raises(ValueError):
        reserve(w, D("-1"))


def test_remaining_never_goes_below_zero() -> None:
    # billed 5.20 against a 5.00 limit (actual above the reservation): nothing left, not -0.20
    assert Window(D("5.00"), spent=D("5.20")).remaining == 0
    assert fraction_used(Window(D("0"))) == 1


POLICY = BudgetKey(Scope.POLICY, "default")
SOURCE = BudgetKey(Scope.SOURCE, "spool")


def _book() -> BudgetBook:
    rules = {
        POLICY: BudgetRules(D("5.00"), D("100.00"), UTC, AtCap.HOLD),
        SOURCE: BudgetRules(D("2.00"), None, UTC, AtCap.REJECT),
    }
    spent = {(POLICY, Period.DAY): D("1.00"), (POLICY, Period.MONTH): D("98.00")}
    return BudgetBook.start(rules, spent, {POLICY: D("0.50"), SOURCE: D("0.50")})


def test_book_room_is_the_least_left_in_any_window_of_any_budget() -> None:
    book = _book()
    # day 5 - 1 - 0.5 = 3.5; month 100 - 98 - 0.5 = 1.5; source day 2 - 0.5 = 1.5
    assert book.room([POLICY]) == D("1.5")
    assert book.room([SOURCE]) == D("1.5")
    assert book.room([]) is None
    book.reserve([POLICY, SOURCE], D("1.0"))
    assert book.room([POLICY]) == D("0.5") and book.room([SOURCE]) == D("0.5")
    assert book.planned == {POLICY: D("1.0"), SOURCE: D("1.0")}
    # the strictest at_cap wins: the source rejects, the policy holds
    assert book.at_cap([POLICY, SOURCE]) is AtCap.REJECT
    assert book.at_cap([POLICY]) is AtCap.HOLD
    assert book.binding([POLICY, SOURCE]) == POLICY  # ties broken by key: policy first
    book.hold(POLICY, D("0.9"))
    book.hold(POLICY, D("0.1"), rejected=True)
    assert (book.held[POLICY].requests, book.held[POLICY].usd) == (2, D("1.0"))
    assert book.held[POLICY].rejected == 1
    book.reserve([SOURCE], D("0.25"))  # the source alone: the policy's windows do not move
    assert book.room([SOURCE]) == D("0.25") and book.room([POLICY]) == D("0.5")
    assert (str(POLICY), str(SOURCE)) == ("policy:default", "source:spool")


def test_book_room_of_several_windows_in_any_order_and_no_negative_reservation() -> None:
    book = _book()
    # windows in book order: policy day 3.5, policy month 1.5, source day 1.5
    assert book.room([SOURCE, POLICY]) == D("1.5")
    book.reserve([SOURCE], D("1.25"))  # source day 0.25 < policy month 1.5, last in order
    assert book.room([POLICY, SOURCE]) == D("0.25")
    with pytest.raises(ValueError, match="negative"):
        book.reserve([POLICY], D("-0.01"))
    # keys with no configured budget: nothing to take from, nothing refused
    book.reserve([BudgetKey(Scope.SOURCE, "other")], D("-1"))
    assert book.planned == {SOURCE: D("1.25")}


# -- the policy with a budget, on a fixed clock ------------------------------------------------

EST = TokenEstimate(1000, 100, "t")
# interactive 0.010, batch 0.005, flex 0.006
COSTS = LaneCosts.from_usd(D("0.010"), D("0.005"), D("0.006"))
RULES = PolicyRules(batch_window=24 * H, allow_flex=True, flex_latency=timedelta(minutes=15))
CLOCK = datetime(2026, 12, 6, 12, tzinfo=UTC)


def _request(deadline: datetime | None) -> Request:
    return Request("spool", "k", "m", Endpoint.CHAT_COMPLETIONS, {}, CLOCK, deadline=deadline)


@pytest.mark.parametrize(
    ("deadline", "costs", "rules", "budget", "outcome", "reason"),
    [
        # budget exhausted: the batch cost 0.005 > 0.004 left -> held
        (None, COSTS, RULES, BudgetRoom(D("0.004")), "held", Reason.BUDGET_EXHAUSTED),
        # exactly enough is enough
        (None, COSTS, RULES, BudgetRoom(D("0.005")), "batch", Reason.DEADLINE_ALLOWS_BATCH),
        # at_cap reject refuses instead of holding
        (
            None,
            COSTS,
            RULES,
            BudgetRoom(D("0.004"), AtCap.REJECT),
            "rejected",
            Reason.BUDGET_EXHAUSTED,
        ),
        # deadline too short for a batch (2 h < 24 h) and flex not allowed -> interactive
        (
            CLOCK + 2 * H,
            COSTS,
            PolicyRules(batch_window=24 * H),
            None,
            "interactive",
            Reason.DEADLINE_TOO_CLOSE,
        ),
        # tiny saving: 0.005 saved < 0.01 minimum -> interactive
        (
            None,
            COSTS,
            PolicyRules(min_savings_usd=D("0.01")),
            None,
            "interactive",
            Reason.SAVINGS_BELOW_MINIMUM,
        ),
        # flex cheaper (0.006 < 0.010) and fast enough (2 h >= 15 min) -> flex
        (CLOCK + 2 * H, COSTS, RULES, None, "flex", Reason.FLEX_CHEAPER_THAN_INTERACTIVE),
        # flex fits the budget (0.006 <= 0.007) -> flex still
        (
            CLOCK + 2 * H,
            COSTS,
            RULES,
            BudgetRoom(D("0.007")),
            "flex",
            Reason.FLEX_CHEAPER_THAN_INTERACTIVE,
        ),
        # batch_only: interactive/flex over the budget, batch fits (0.005 <= 0.0055) -> batch
        # although the deadline is too close for one
        (
            CLOCK + 2 * H,
            COSTS,
            RULES,
            BudgetRoom(D("0.0055"), AtCap.BATCH_ONLY),
            "batch",
            Reason.BUDGET_BATCH_ONLY,
        ),
        # batch_only with no room even for batch -> held
        (
            CLOCK + 2 * H,
            COSTS,
            RULES,
            BudgetRoom(D("0.001"), AtCap.BATCH_ONLY),
            "held",
            Reason.BUDGET_EXHAUSTED,
        ),
        # unpriced: rejected whatever the budget (no price, no reservation)
        (
            None,
            LaneCosts.from_usd(None, None, None),
            RULES,
            BudgetRoom(D("0")),
            "rejected",
            Reason.UNPRICED,
        ),
    ],
)
def test_policy_scenarios_with_a_budget(
    deadline: datetime | None,
    costs: LaneCosts,
    rules: PolicyRules,
    budget: BudgetRoom | None,
    outcome: str,
    reason: Reason,
) -> None:
    decision = decide(_request(deadline), EST, costs, rules, CLOCK, budget)
    assert (decision.outcome, decision.reason) == (outcome, reason), decision.detail
    if outcome == "held":
        assert decision.lane is None and decision.held
    if outcome == "batch":
        assert decision.lane is Lane.BATCH

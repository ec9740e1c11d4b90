"""The first policy: batch when the deadline and the saving allow, else flex, else interactive;
unpriced models are rejected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from planner.core.cost import LaneCosts
from planner.core.model import Endpoint, Lane, Request, TokenEstimate
from planner.core.policy import PolicyRules, Reason, deadline_of, decide

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
H = timedelta(hours=1)
D = Decimal
EST = TokenEstimate(1000, 100, "t")
# interactive 0.01, batch 0.005 (saving 0.005), flex 0.005
PRICED = LaneCosts.from_usd(D("0.01"), D("0.005"), D("0.005"))
NO_FLEX = LaneCosts.from_usd(D("0.01"), D("0.005"), None)
NO_BATCH = LaneCosts.from_usd(D("0.01"), None, D("0.005"))
FLEX_DEARER = LaneCosts.from_usd(D("0.01"), None, D("0.01"))
UNPRICED = LaneCosts.from_usd(None, None, None)
RULES = PolicyRules(batch_window=24 * H, allow_flex=True, flex_latency=timedelta(minutes=15))


def _request(deadline: datetime | None = None, received: datetime = NOW) -> Request:
    return Request("s", "k", "m", Endpoint.CHAT_COMPLETIONS, {}, received, deadline=deadline)


@pytest.mark.parametrize(
    ("request_", "costs", "rules", "lane", "reason"),
    [
        (_request(), PRICED, RULES, Lane.BATCH, Reason.DEADLINE_ALLOWS_BATCH),  # no deadline
        (_request(NOW + 24 * H), PRICED, RULES, Lane.BATCH, Reason.DEADLINE_ALLOWS_BATCH),
        # 23h59m left < 24h window; flex allowed and cheaper
        (
            _request(NOW + 24 * H - timedelta(minutes=1)),
            PRICED,
            RULES,
            Lane.FLEX,
            Reason.FLEX_CHEAPER_THAN_INTERACTIVE,
        ),
        # too close for flex latency too (10 min < 15 min)
        (
            _request(NOW + timedelta(minutes=10)),
            PRICED,
            RULES,
            Lane.INTERACTIVE,
            Reason.DEADLINE_TOO_CLOSE,
        ),
        # deadline already passed
        (_request(NOW - H), PRICED, RULES, Lane.INTERACTIVE, Reason.DEADLINE_TOO_CLOSE),
        # flex not allowed
        (
            _request(NOW + H),
            PRICED,
            PolicyRules(batch_window=24 * H),
            Lane.INTERACTIVE,
            Reason.DEADLINE_TOO_CLOSE,
        ),
        # the model has no flex price
        (_request(NOW + H), NO_FLEX, RULES, Lane.INTERACTIVE, Reason.DEADLINE_TOO_CLOSE),
        # flex priced but not cheaper than interactive (no batch price either)
        (_request(), FLEX_DEARER, RULES, Lane.INTERACTIVE, Reason.BATCH_UNPRICED),
        # no batch price: flex instead
        (_request(), NO_BATCH, RULES, Lane.FLEX, Reason.FLEX_CHEAPER_THAN_INTERACTIVE),
        # saving 0.005 < minimum 0.01 USD, flex off
        (
            _request(),
            PRICED,
            PolicyRules(min_savings_usd=D("0.01")),
            Lane.INTERACTIVE,
            Reason.SAVINGS_BELOW_MINIMUM,
        ),
        # saving 0.005 == minimum 0.005: enough
        (
            _request(),
            PRICED,
            PolicyRules(min_savings_usd=D("0.005")),
            Lane.BATCH,
            Reason.DEADLINE_ALLOWS_BATCH,
        ),
        # ratio: 0.005 >= 0.5 × 0.01 = 0.005 -> batch; 0.005 < 0.6 × 0.01 = 0.006 -> not
        (
            _request(),
            PRICED,
            PolicyRules(min_savings_ratio=D("0.5")),
            Lane.BATCH,
            Reason.DEADLINE_ALLOWS_BATCH,
        ),
        (
            _request(),
            PRICED,
            PolicyRules(min_savings_ratio=D("0.6")),
            Lane.INTERACTIVE,
            Reason.SAVINGS_BELOW_MINIMUM,
        ),
        # unpriced: rejected, never guessed
        (_request(), UNPRICED, RULES, None, Reason.UNPRICED),
    ],
)
def test_decide(
    request_: Request, costs: LaneCosts, rules: PolicyRules, lane: Lane | None, reason: Reason
) -> None:
    decision = decide(request_, EST, costs, rules, NOW)
    assert (decision.lane, decision.reason) == (lane, reason)
    assert decision.detail


def test_default_deadline_counts_from_ingestion() -> None:
    rules = PolicyRules(batch_window=24 * H, default_deadline=26 * H)
    # received 3h ago: deadline in 23h < 24h window
    late = _request(received=NOW - 3 * H)
    assert deadline_of(late, rules) == NOW + 23 * H
    assert decide(late, EST, PRICED, rules, NOW).reason is Reason.DEADLINE_TOO_CLOSE
    # received 1h ago: 25h left
    assert decide(_request(received=NOW - H), EST, PRICED, rules, NOW).lane is Lane.BATCH
    # the request's own deadline wins over the default
    own = _request(NOW + 48 * H, received=NOW - 3 * H)
    assert decide(own, EST, PRICED, rules, NOW).lane is Lane.BATCH


def test_reason_ids_are_stable_strings() -> None:
    assert {r.value for r in Reason} == {
        "deadline_allows_batch", "deadline_too_close", "savings_below_minimum",
        "batch_unpriced", "unpriced", "flex_cheaper_than_interactive", "no_provider",
        "budget_exhausted", "budget_batch_only", "batch_escaped",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "costs", "detail"),
    [
        # no deadline, saving 0.01 − 0.005 = 0.005
        (_request(), PRICED, "no deadline; saves 0.005 USD"),
        # 1h left < 24h: flex at 0.005 < 0.01
        (
            _request(NOW + H),
            PRICED,
            "batch not chosen (deadline_too_close); flex 0.005 < 0.01 USD",
        ),
        # no flex price either: interactive, the saving shown all the same
        (
            _request(NOW + H),
            NO_FLEX,
            "deadline 2026-11-28T13:00:00+00:00; savings 0.005",
        ),
        # flex dearer and no batch price: the saving is unknown
        (_request(), FLEX_DEARER, "no deadline; savings None"),
        (_request(), UNPRICED, "no price for model m (1000 input tokens)"),
    ],
)
def test_decision_sentences(request_: Request, costs: LaneCosts, detail: str) -> None:
    """The sentence is written when read (``Decision.detail``), from what the rules saw."""
    assert decide(request_, EST, costs, RULES, NOW).detail == detail

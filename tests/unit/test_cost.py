"""Costs: catalog price × tokens exactly in Decimal, per lane, long context, dated periods, the
batch cache rule, and "unpriced is None, never zero". Each case shows its arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from planner.config.prices import shipped_catalog
from planner.core.catalog import Catalog, ModelEntry
from planner.core.cost import LaneCosts, actual_cost, compare, cost, lane_rates
from planner.core.model import Lane, TokenEstimate, Usage

AT = datetime(2026, 11, 28, 12, tzinfo=UTC)
D = Decimal


def _shipped(model: str) -> ModelEntry:
    entry = shipped_catalog().get(model)
    assert entry is not None
    return entry


@pytest.mark.parametrize(
    ("model", "lane", "tokens", "expected"),
    [
        # gpt-4o-mini: 1,000,000 in × 0.15 + 1,000,000 out × 0.6 = 0.75
        ("gpt-4o-mini", Lane.INTERACTIVE, (1_000_000, 1_000_000, 0), D("0.75")),
        # batch: 1M × 0.075 + 1M × 0.3 = 0.375
        ("gpt-4o-mini", Lane.BATCH, (1_000_000, 1_000_000, 0), D("0.375")),
        # no flex price for gpt-4o-mini: unpriced
        ("gpt-4o-mini", Lane.FLEX, (1_000_000, 1_000_000, 0), None),
        # gpt-5 interactive: 1234 × 1.25/1M + 567 × 10/1M = 0.0015425 + 0.00567 = 0.0072125
        ("gpt-5", Lane.INTERACTIVE, (1234, 567, 0), D("0.0072125")),
        # gpt-5 flex: 1234 × 0.625/1M + 567 × 5/1M = 0.00077125 + 0.002835 = 0.00360625
        ("gpt-5", Lane.FLEX, (1234, 567, 0), D("0.00360625")),
        # gpt-5 with 1000 cached of 1234: 234 × 1.25 + 1000 × 0.125 + 567 × 10, all /1M
        #   = 0.0002925 + 0.000125 + 0.00567 = 0.0060875
        ("gpt-5", Lane.INTERACTIVE, (1234, 567, 1000), D("0.0060875")),
        # gpt-5 batch cache hit has its own rate: 234 × 0.625 + 1000 × 0.0625 + 567 × 5, /1M
        #   = 0.00014625 + 0.0000625 + 0.002835 = 0.00304375
        ("gpt-5", Lane.BATCH, (1234, 567, 1000), D("0.00304375")),
        # gpt-5 flex cache hit: 234 × 0.625 + 1000 × 0.0625 + 567 × 5 = 0.00304375
        ("gpt-5", Lane.FLEX, (1234, 567, 1000), D("0.00304375")),
        # gpt-4o batch: no batch cached price -> standard cached 1.25 (LiteLLM rule):
        #   0 × 1.25 + 1000 × 1.25 + 0 = 0.00125
        ("gpt-4o", Lane.BATCH, (1000, 0, 1000), D("0.00125")),
        # o3 flex cached 0.25: 1000 cached × 0.25/1M = 0.00025
        ("o3", Lane.FLEX, (1000, 0, 1000), D("0.00025")),
        # gemini-2.5-flash flex has no flex cached rate -> standard cached 0.03:
        #   1000 × 0.03/1M = 0.00003
        ("gemini-2.5-flash", Lane.FLEX, (1000, 0, 1000), D("0.00003")),
        # embeddings: 1000 × 0.02/1M = 0.00002; output rate "0"
        ("text-embedding-3-small", Lane.INTERACTIVE, (1000, 0, 0), D("0.00002")),
        # gemini-embedding-001 batch has no output price, but 0 output tokens cost 0:
        #   1000 × 0.075/1M = 0.000075
        ("gemini-embedding-001", Lane.BATCH, (1000, 0, 0), D("0.000075")),
        # ... while 1 output token at an unknown rate makes the cost unknown
        ("gemini-embedding-001", Lane.BATCH, (1000, 1, 0), None),
        # gemini-2.0-flash has no batch cached price and gets the standard cached rate 0.025
        ("gemini-2.0-flash", Lane.BATCH, (1000, 0, 1000), D("0.000025")),
    ],
)
def test_cost_table(
    model: str, lane: Lane, tokens: tuple[int, int, int], expected: Decimal | None
) -> None:
    given, out, cached = tokens
    got = cost(
        _shipped(model),
        lane,
        input_tokens=given,
        output_tokens=out,
        cached_input_tokens=cached,
        at=AT,
    )
    assert got == expected
    assert got is None or isinstance(got, Decimal)


@pytest.mark.parametrize(
    ("lane", "given", "expected"),
    [
        # gemini-2.5-pro at exactly 200,000: base rates. 200000 × 1.25/1M + 1000 × 10/1M
        #   = 0.25 + 0.01 = 0.26
        (Lane.INTERACTIVE, 200_000, D("0.26")),
        # 200,001 (strictly greater): whole request at the long rates.
        #   200001 × 2.5/1M + 1000 × 15/1M = 0.5000025 + 0.015 = 0.5150025
        (Lane.INTERACTIVE, 200_001, D("0.5150025")),
        # batch long: 200001 × 1.25/1M + 1000 × 7.5/1M = 0.25000125 + 0.0075 = 0.25750125
        (Lane.BATCH, 200_001, D("0.25750125")),
        # flex has no long-context rate: unpriced above the threshold, priced at it
        (Lane.FLEX, 200_001, None),
        # flex at 200000: 200000 × 0.625/1M + 1000 × 5/1M = 0.125 + 0.005 = 0.13
        (Lane.FLEX, 200_000, D("0.13")),
    ],
)
def test_long_context(lane: Lane, given: int, expected: Decimal | None) -> None:
    entry = _shipped("gemini-2.5-pro")
    assert cost(entry, lane, input_tokens=given, output_tokens=1000, at=AT) == expected


def test_long_context_cache_reads_switch_too() -> None:
    # 300,000 prompt of which 100,000 cached, gemini-3.1-pro-preview long tier:
    # 200000 × 4/1M + 100000 × 0.4/1M + 0 = 0.8 + 0.04 = 0.84
    entry = _shipped("gemini-3.1-pro-preview")
    got = cost(
        entry,
        Lane.INTERACTIVE,
        input_tokens=300_000,
        output_tokens=0,
        cached_input_tokens=100_000,
        at=AT,
    )
    assert got == D("0.84")


def test_long_context_without_batch_rate_is_unpriced() -> None:
    # gemini-3-pro-preview publishes no batch rate above 200k: unknown, not the base rate
    entry = _shipped("gemini-3-pro-preview")
    assert cost(entry, Lane.BATCH, input_tokens=200_001, output_tokens=1, at=AT) is None
    # 200000 × 1/1M + 1 × 6/1M = 0.2 + 0.000006
    assert cost(entry, Lane.BATCH, input_tokens=200_000, output_tokens=1, at=AT) == D("0.200006")


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # D1: through 2026-12-31 at 0.75 / 3.75: 1M × 0.75 + 1M × 3.75 = 4.5
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), D("4.5")),
        # from 2027-01-01 doubled: 1M × 1.5 + 1M × 7.5 = 9
        (datetime(2027, 1, 1, tzinfo=UTC), D("9")),
        # the period is chosen by the UTC day: 2027-01-01 01:00 in UTC+2 is still 2026
        (datetime.fromisoformat("2027-01-01T01:00:00+02:00"), D("4.5")),
    ],
)
def test_dated_price_change(at: datetime, expected: Decimal) -> None:
    for model in ("gemini-3.6-flash", "gemini-3.7-flash", "gemini-3.8-flash"):
        got = cost(
            _shipped(model),
            Lane.INTERACTIVE,
            input_tokens=1_000_000,
            output_tokens=1_000_000,
            at=at,
        )
        assert got == expected


def test_before_first_period_is_unpriced() -> None:
    entry = Catalog.from_mapping(
        {
            "m": {
                "provider": "openai",
                "kind": "chat",
                "prices": [{"effective": "2026-06-01", "input": "1", "output": "2"}],
            }
        }
    ).get("m")
    assert entry is not None
    early = datetime(2026, 5, 31, tzinfo=UTC)
    assert cost(entry, Lane.INTERACTIVE, input_tokens=1, output_tokens=1, at=early) is None
    # 1 × 1/1M + 1 × 2/1M = 0.000003
    assert cost(entry, Lane.INTERACTIVE, input_tokens=1, output_tokens=1, at=AT) == D("0.000003")


def test_no_cached_price_bills_cached_tokens_at_input_rate() -> None:
    entry = Catalog.from_mapping(
        {"m": {"provider": "openai", "kind": "chat", "prices": [{"input": "2", "output": "0"}]}}
    ).get("m")
    assert entry is not None
    # 500 cached of 1000, no cached price: 1000 × 2/1M = 0.002 (no discount assumed)
    got = cost(
        entry,
        Lane.INTERACTIVE,
        input_tokens=1000,
        output_tokens=0,
        cached_input_tokens=500,
        at=AT,
    )
    assert got == D("0.002")
    # and no batch price at all: unpriced
    assert cost(entry, Lane.BATCH, input_tokens=1000, output_tokens=0, at=AT) is None


def test_explicit_zero_batch_cached_rate_is_used() -> None:
    entry = Catalog.from_mapping(
        {
            "m": {
                "provider": "gemini",
                "kind": "chat",
                "prices": [
                    {
                        "input": "1",
                        "batch_input": "0.5",
                        "cached_input": "0.1",
                        "batch_cached_input": "0",
                    }
                ],
            }
        }
    ).get("m")
    assert entry is not None
    # 1000 cached × 0 = 0 (an explicit zero is not "absent")
    got = cost(
        entry, Lane.BATCH, input_tokens=1000, output_tokens=0, cached_input_tokens=1000, at=AT
    )
    assert got == D("0")


@pytest.mark.parametrize(
    ("given", "out", "cached"), [(-1, 0, 0), (1, -1, 0), (1, 0, -1), (1, 0, 2)]
)
def test_bad_token_counts(given: int, out: int, cached: int) -> None:
    with pytest.raises(ValueError, match="token"):
        cost(
            _shipped("gpt-5"),
            Lane.INTERACTIVE,
            input_tokens=given,
            output_tokens=out,
            cached_input_tokens=cached,
            at=AT,
        )


def test_actual_cost_uses_usage() -> None:
    # Gemini vector (spec §5.2): prompt 8, candidates 11 + thoughts 829 = 840 output tokens,
    # gemini-2.5-flash batch: 8 × 0.15/1M + 840 × 1.25/1M = 0.0000012 + 0.00105 = 0.0010512
    usage = Usage(input_tokens=8, output_tokens=840)
    assert actual_cost(_shipped("gemini-2.5-flash"), Lane.BATCH, usage, AT) == D("0.0010512")


def test_compare() -> None:
    # gpt-5-mini, 10,000 in / 2,000 out:
    #   interactive 10000 × 0.25/1M + 2000 × 2/1M = 0.0025 + 0.004 = 0.0065
    #   batch/flex  10000 × 0.125/1M + 2000 × 1/1M = 0.00125 + 0.002 = 0.00325
    #   savings 0.0065 − 0.00325 = 0.00325
    got = compare(_shipped("gpt-5-mini"), TokenEstimate(10_000, 2_000, "t"), AT)
    assert got == LaneCosts.from_usd(D("0.0065"), D("0.00325"), D("0.00325"))


def test_compare_unpriced() -> None:
    assert compare(None, TokenEstimate(1, 1, "t"), AT) == LaneCosts.from_usd(None, None, None)
    # no flex and unknown batch output for 1 output token: batch and savings unknown
    got = compare(_shipped("gemini-embedding-001"), TokenEstimate(1000, 1, "t"), AT)
    assert (got.batch, got.flex, got.savings) == (None, None, None)


def test_lane_rates_input_missing_is_none() -> None:
    entry = _shipped("gpt-4.1")
    period = entry.period_at(AT)
    assert period is not None
    assert lane_rates(period, Lane.FLEX, 10) is None
    assert lane_rates(period, Lane.BATCH, 10) is not None

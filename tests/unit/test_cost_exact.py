"""The integer pricing path (FUSD = 10^-15 USD per token, ``core/cost.py``) equals the Decimal
definition ``rate × tokens / 1,000,000`` to the last digit, for random catalogs and token counts;
prices the integer unit cannot carry are refused when the catalog is read."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.config.load import validate_file
from planner.core.catalog import Catalog, ModelEntry
from planner.core.cost import (
    LaneCosts,
    compare,
    cost,
    from_usd,
    lane_rates,
    rate_fusd,
    to_usd,
    usd_text,
)
from planner.core.model import Lane, TokenEstimate
from planner.core.policy import PolicyRules

AT = datetime(2026, 11, 28, 12, tzinfo=UTC)
LANES = (Lane.INTERACTIVE, Lane.BATCH, Lane.FLEX)

# a price of up to 9 decimal places (USD per 1M tokens), as the catalog's decimal string
prices = st.builds(
    lambda units, places: str(Decimal(units).scaleb(-places)),
    st.one_of(st.integers(0, 10**6), st.integers(0, 10**30)),  # up to 30 digits
    st.integers(0, 9),
)
maybe = st.one_of(st.none(), prices)
tokens = st.integers(0, 10**9)


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


@st.composite
def entries(draw: st.DrawFn) -> ModelEntry:
    def tier() -> dict[str, Any]:
        names = ("output", "batch_input", "batch_output", "cached_input", "batch_cached_input")
        return {"input": draw(prices), **{n: draw(maybe) for n in names}}

    period = tier()
    period.update(flex_input=draw(maybe), flex_output=draw(maybe), flex_cached_input=draw(maybe))
    if draw(st.booleans()):
        period["long_context_threshold"] = draw(st.integers(1, 10**6))
        period["long_context"] = _drop_none(tier())
    raw = {"provider": "openai", "kind": "chat", "prices": [_drop_none(period)]}
    entry = Catalog.from_mapping({"m": raw}).get("m")
    assert entry is not None
    return entry


def _definition(
    entry: ModelEntry, lane: Lane, input_tokens: int, output_tokens: int, cached: int
) -> Decimal | None:
    """The Decimal definition (the arithmetic before integer pricing), in a context wide
    enough that nothing rounds."""
    period = entry.period_at(AT)
    assert period is not None
    rates = lane_rates(period, lane, input_tokens)
    if rates is None:
        return None
    cached_rate = rates.cached_input if rates.cached_input is not None else rates.input
    parts = (
        (rates.input, input_tokens - cached),
        (cached_rate, cached),
        (rates.output, output_tokens),
    )
    total = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = 200
        for rate, count in parts:
            if count == 0:
                continue
            if rate is None:
                return None
            total += rate * count / Decimal(1_000_000)
    return total


@given(entries(), tokens, tokens, st.data())
def test_integer_cost_equals_the_decimal_definition(
    entry: ModelEntry, input_tokens: int, output_tokens: int, data: st.DataObject
) -> None:
    cached = data.draw(st.integers(0, input_tokens))
    for lane in LANES:
        expected = _definition(entry, lane, input_tokens, output_tokens, cached)
        got = cost(
            entry,
            lane,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached,
            at=AT,
        )
        assert got == expected
        # and it is a whole number of 10^-15 USD: the store's NUMERIC(28, 15) keeps it as is
        assert got is None or int(got.as_tuple().exponent) >= -15


@given(entries(), tokens, tokens)
def test_compare_equals_cost_in_each_lane(
    entry: ModelEntry, input_tokens: int, output_tokens: int
) -> None:
    got = compare(entry, TokenEstimate(input_tokens, output_tokens, "t"), AT)
    each = [_definition(entry, lane, input_tokens, output_tokens, 0) for lane in LANES]
    assert (got.interactive, got.batch, got.flex) == tuple(each)
    interactive, batch = each[0], each[1]
    with localcontext() as ctx:
        ctx.prec = 200  # beyond 28 digits Decimal would round the difference; FUSD does not
        savings = None if interactive is None or batch is None else interactive - batch
    assert got.savings == savings


@given(st.integers(-(10**30), 10**30))
def test_fusd_round_trip(fusd: int) -> None:
    usd = to_usd(fusd)
    with localcontext() as ctx:
        ctx.prec = 100
        assert usd == Decimal(fusd).scaleb(-15)
    assert from_usd(usd) == fusd
    assert Decimal(usd_text(fusd)) == usd
    assert "E" not in usd_text(fusd)


def test_to_usd_shows_no_trailing_zeros() -> None:
    # 1,250,000,000,000 FUSD = 0.00125 USD; 10^16 FUSD = 10 USD; -5 FUSD = -0.000000000000005
    assert str(to_usd(1_250_000_000_000)) == "0.00125"
    assert str(to_usd(10**16)) == "10"
    assert usd_text(-5) == "-0.000000000000005"


def test_from_usd_refuses_what_is_finer_than_fusd() -> None:
    with pytest.raises(ValueError, match="10\\^-15"):
        from_usd(Decimal("1e-16"))
    with pytest.raises(ValueError, match="10\\^-15"):
        LaneCosts.from_usd(Decimal("0.0000000000000001"), None, None)


def test_rate_fusd() -> None:
    # 0.0375 USD per 1M tokens = 0.0375 × 10^9 = 37,500,000 FUSD per token
    assert rate_fusd(Decimal("0.0375")) == 37_500_000
    # 0.000000001 USD per 1M tokens = 1 FUSD per token, the finest price
    assert rate_fusd(Decimal("0.000000001")) == 1
    with pytest.raises(ValueError, match="more than 9 decimal places"):
        rate_fusd(Decimal("0.0000000001"))


@pytest.mark.parametrize("price", ["0.0000000001", "1.1234567891", 1e-10])
def test_catalog_refuses_a_price_finer_than_fusd(price: Any) -> None:
    raw = {"provider": "openai", "kind": "chat", "prices": [{"input": "1", "output": price}]}
    with pytest.raises(ValueError) as caught:
        Catalog.from_mapping({"m": raw})
    message = str(caught.value)
    if isinstance(price, float):  # a float is refused as such, before its decimals are looked at
        assert message.startswith("models.m.prices[0].output: expected a decimal string")
    else:
        assert message.startswith("models.m.prices[0].output: ")
        assert "more than 9 decimal places" in message


def test_catalog_takes_nine_decimal_places_and_trailing_zeros() -> None:
    raw = {"provider": "openai", "kind": "chat", "prices": [{"input": "0.123456789000"}]}
    entry = Catalog.from_mapping({"m": raw}).get("m")
    assert entry is not None
    # 1,000 × 0.123456789 / 1M = 0.000123456789
    got = cost(entry, Lane.INTERACTIVE, input_tokens=1000, output_tokens=0, at=AT)
    assert got == Decimal("0.000123456789")


@given(
    st.integers(0, 10**18),
    st.integers(0, 10**18),
    st.builds(lambda n, p: Decimal(n).scaleb(-p), st.integers(0, 10**9), st.integers(0, 20)),
    st.one_of(
        st.none(),
        st.builds(lambda n, p: Decimal(n).scaleb(-p), st.integers(0, 10**6), st.integers(0, 8)),
    ),
)
def test_minimum_saving_in_fusd_equals_the_decimal_rule(
    savings: int, interactive: int, minimum: Decimal, ratio: Decimal | None
) -> None:
    """``savings >= min_savings_usd and savings >= ratio × interactive``, checked in integers,
    says what the Decimal comparison says (any number of decimals in the policy's figures)."""
    from planner.core.policy import _savings_enough

    rules = PolicyRules(min_savings_usd=minimum, min_savings_ratio=ratio)
    with localcontext() as ctx:
        ctx.prec = 200
        usd, total = to_usd(savings), to_usd(interactive)
        expected = usd >= minimum and (ratio is None or usd >= ratio * total)
    assert _savings_enough(savings, interactive, rules) is expected


def test_config_override_finer_than_fusd_is_refused_where_it_is_written(tmp_path: Path) -> None:
    file = tmp_path / "planner.yaml"
    file.write_text(
        'models:\n  gpt-4o-mini:\n    prices:\n      - input: "0.1500000001"\n',
        encoding="utf-8",
    )
    problems = validate_file(file)
    assert len(problems) == 1
    assert ":4:" in problems[0]
    assert "more than 9 decimal places" in problems[0]


def _entry(prices: list[dict[str, Any]]) -> ModelEntry:
    entry = Catalog.from_mapping({"m": {"provider": "openai", "kind": "chat", "prices": prices}})
    found = entry.get("m")
    assert found is not None
    return found


def test_lane_fusd_picks_the_lane() -> None:
    costs = LaneCosts(3, 1, 2)
    assert [costs.lane_fusd(lane) for lane in LANES] == [3, 1, 2]
    assert costs.savings_fusd == 2


def test_compare_before_the_first_period_and_with_negative_tokens() -> None:
    entry = _entry([{"effective": "2027-01-01", "input": "1", "output": "2"}])
    unpriced = LaneCosts(None, None, None)
    assert compare(entry, TokenEstimate(1, 1, "t"), AT) == unpriced
    with pytest.raises(ValueError, match="token counts must be >= 0"):
        compare(entry, TokenEstimate(-1, 0, "t"), AT)


def test_remembered_tables_and_days_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from planner.core import cost as cost_module

    monkeypatch.setattr(cost_module, "_TABLES_MAX", 2)
    entry = _entry([{"input": "1", "output": "2"}])
    for day in range(1, 6):
        at = datetime(2026, 11, day, tzinfo=UTC)
        # 1 × 1/1M + 1 × 2/1M = 0.000003, whatever was forgotten
        assert compare(entry, TokenEstimate(1, 1, "t"), at).interactive == Decimal("0.000003")
        assert len(cost_module._TABLES) <= 2 and len(cost_module._DAYS) <= 2

"""What a request costs in each lane, in exact ``Decimal`` USD (rates are per 1,000,000 tokens).

Rules (``specs/pricing-and-limits.md`` §1.2, §4, §5.2, §6 D3):

- The price period in force at ``at`` applies (dated changes, D1).
- Long context: when the prompt (all input tokens, cached included) is *strictly greater* than
  the period's threshold, the long-context rates replace the base rates for the whole request —
  input, output and cache reads. Flex has no published long-context rates, so a long prompt has
  no flex price.
- Batch cache hits: ``batch_cached_input`` if published, else the standard ``cached_input``
  (LiteLLM's rule; the OpenAI page shows "-" for most models, Q2). Flex likewise.
- A model with no cached rate at all bills cached tokens at the lane's input rate (no discount
  is known, so none is assumed).
- A price that is unknown makes the cost unknown (``None``), never zero — except that zero
  tokens cost zero whatever the rate (an embedding's unpriced batch output, for one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from planner.core.catalog import ModelEntry, PricePeriod, Rates, TierRates
from planner.core.model import Lane, TokenEstimate, Usage

PER_TOKENS = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class LaneCosts:
    """One request's cost in each lane; ``savings`` = interactive − batch (``None`` if unknown)."""

    interactive: Decimal | None
    batch: Decimal | None
    flex: Decimal | None
    savings: Decimal | None


def _tier(period: PricePeriod, input_tokens: int) -> tuple[TierRates, bool]:
    threshold = period.long_context_threshold
    if threshold is not None and period.long_context is not None and input_tokens > threshold:
        return period.long_context, True
    return period.standard, False


def _first(rate: Decimal | None, otherwise: Decimal | None) -> Decimal | None:
    return rate if rate is not None else otherwise


def lane_rates(period: PricePeriod, lane: Lane, input_tokens: int) -> Rates | None:
    """The rates one request pays in ``lane``; ``None`` when the lane has no known price."""
    tier, long = _tier(period, input_tokens)
    if lane is Lane.INTERACTIVE:
        rates = Rates(tier.input, tier.output, tier.cached_input)
    elif lane is Lane.BATCH:
        cached = _first(tier.batch_cached_input, tier.cached_input)
        rates = Rates(tier.batch_input, tier.batch_output, cached)
    elif period.flex is None or long:
        return None
    else:
        flex = period.flex
        rates = Rates(flex.input, flex.output, _first(flex.cached_input, tier.cached_input))
    return None if rates.input is None else rates


def _part(rate: Decimal | None, tokens: int) -> Decimal | None:
    if tokens == 0:
        return Decimal(0)
    return None if rate is None else rate * tokens / PER_TOKENS


def _sum(*parts: Decimal | None) -> Decimal | None:
    total = Decimal(0)
    for part in parts:
        if part is None:
            return None
        total += part
    return total


def _check_tokens(input_tokens: int, output_tokens: int, cached_input_tokens: int) -> None:
    if min(input_tokens, output_tokens, cached_input_tokens) < 0:
        raise ValueError("token counts must be >= 0")
    if cached_input_tokens > input_tokens:
        raise ValueError(
            f"cached_input_tokens ({cached_input_tokens}) exceed input_tokens ({input_tokens})"
        )


def cost(
    entry: ModelEntry,
    lane: Lane,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    at: datetime,
) -> Decimal | None:
    """USD for one request (``input_tokens`` includes the cached ones); ``None`` = unpriced."""
    _check_tokens(input_tokens, output_tokens, cached_input_tokens)
    period = entry.period_at(at)
    rates = None if period is None else lane_rates(period, lane, input_tokens)
    if rates is None:
        return None
    return _sum(
        _part(rates.input, input_tokens - cached_input_tokens),
        _part(_first(rates.cached_input, rates.input), cached_input_tokens),
        _part(rates.output, output_tokens),
    )


def actual_cost(entry: ModelEntry, lane: Lane, usage: Usage, at: datetime) -> Decimal | None:
    """What billed ``usage`` cost, with the price in force at ``at`` (when it was billed)."""
    return cost(
        entry,
        lane,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        at=at,
    )


def _lane_cost(
    period: PricePeriod, lane: Lane, input_tokens: int, output_tokens: int
) -> Decimal | None:
    rates = lane_rates(period, lane, input_tokens)
    if rates is None:
        return None
    return _sum(_part(rates.input, input_tokens), _part(rates.output, output_tokens))


_PERIODS: dict[tuple[int, datetime], tuple[ModelEntry, PricePeriod | None]] = {}
_PERIODS_MAX = 1024


def _period_at(entry: ModelEntry, at: datetime) -> PricePeriod | None:
    """``entry.period_at(at)``, remembered: a planning pass prices every request at one ``now``."""
    key = (id(entry), at)
    found = _PERIODS.get(key)
    if found is not None and found[0] is entry:
        return found[1]
    if len(_PERIODS) >= _PERIODS_MAX:
        _PERIODS.clear()
    period = entry.period_at(at)
    _PERIODS[key] = (entry, period)  # the entry is kept alive, so its id is not reused
    return period


def compare(entry: ModelEntry | None, estimate: TokenEstimate, at: datetime) -> LaneCosts:
    """The estimated cost in every lane; an unknown model is unpriced everywhere. Equal to
    ``cost(entry, lane, ...)`` for each lane, with the period looked up once."""
    if entry is None:
        return LaneCosts(None, None, None, None)
    input_tokens, output_tokens = estimate.input_tokens, estimate.output_tokens
    _check_tokens(input_tokens, output_tokens, 0)
    period = _period_at(entry, at)
    if period is None:
        return LaneCosts(None, None, None, None)
    interactive = _lane_cost(period, Lane.INTERACTIVE, input_tokens, output_tokens)
    batch = _lane_cost(period, Lane.BATCH, input_tokens, output_tokens)
    flex = _lane_cost(period, Lane.FLEX, input_tokens, output_tokens)
    savings = None if interactive is None or batch is None else interactive - batch
    return LaneCosts(interactive, batch, flex, savings)

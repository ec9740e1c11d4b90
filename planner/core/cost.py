"""What a request costs in each lane, exactly (rates are USD per 1,000,000 tokens).

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

Arithmetic: a cost is ``rate × tokens / 1,000,000`` in exact decimal. It is computed in
integers of ``FUSD`` (femto-dollars, 10⁻¹⁵ USD, the store's money scale): a rate of ``p`` USD per
1M tokens is ``p × 10⁹`` FUSD per token, an integer for every price of at most 9 decimal places,
which the catalog requires (``core/catalog.py``), so ``rate × tokens`` is exact with no rounding.
The integer rates are worked out once per (model, day) (:func:`price_table`) from the same
:func:`lane_rates` rule; ``Decimal`` appears only where money leaves this module (:func:`to_usd`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple

from planner.core.catalog import (
    PRICE_DECIMALS,
    ModelEntry,
    PricePeriod,
    Rates,
    TierRates,
    utc_day,
)
from planner.core.model import Lane, TokenEstimate, Usage

PER_TOKENS = Decimal(1_000_000)
FUSD_PER_USD = 10**15
"""Integer money unit: 1 FUSD = 10⁻¹⁵ USD (``NUMERIC(28, 15)`` in the store)."""
_RATE_SCALE = PRICE_DECIMALS  # USD per 1M tokens -> FUSD per token: × 10¹⁵ / 10⁶


def to_usd(fusd: int) -> Decimal:
    """``fusd`` FUSD as exact USD without trailing zeros: ``1_250_000_000_000`` -> ``0.00125``."""
    whole, frac = divmod(abs(fusd), FUSD_PER_USD)
    if frac == 0:
        return Decimal(whole if fusd >= 0 else -whole)
    if whole < _FAST_WHOLE:  # at most 27 digits: scaleb and normalize cannot round
        return Decimal(fusd).scaleb(-15).normalize()
    sign = "-" if fusd < 0 else ""
    return Decimal(f"{sign}{whole}.{frac:015d}".rstrip("0"))


_FAST_WHOLE = 10**12


def usd_text(fusd: int) -> str:
    """``fusd`` as a plain decimal USD string, for messages (never scientific notation)."""
    return format(to_usd(fusd), "f")


def _scaled(value: Decimal, places: int) -> int | None:
    """``value × 10^places`` as an int if it is whole, else ``None`` (exact: no context)."""
    numerator, denominator = value.as_integer_ratio()
    whole, rest = divmod(numerator * 10**places, denominator)
    return None if rest else whole


def from_usd(usd: Decimal) -> int:
    """Exact USD as FUSD; ``ValueError`` if it has more than 15 decimal places."""
    found = _scaled(usd, 15)
    if found is None:
        raise ValueError(f"{usd} USD is not a whole number of 10^-15 USD")
    return found


def rate_fusd(rate: Decimal) -> int:
    """A rate in USD per 1M tokens as FUSD per token; ``ValueError`` if not exact."""
    found = _scaled(rate, _RATE_SCALE)
    if found is None:
        raise ValueError(
            f"price {rate} has more than {_RATE_SCALE} decimal places per 1M tokens "
            "(10^-15 USD per token, the store's money scale)"
        )
    return found


def _usd(fusd: int | None) -> Decimal | None:
    return None if fusd is None else to_usd(fusd)


class LaneCosts(NamedTuple):
    """One request's cost in each lane, in integer FUSD (``None`` = unknown); the properties
    give USD. ``savings`` = interactive − batch."""

    interactive_fusd: int | None
    batch_fusd: int | None
    flex_fusd: int | None

    @classmethod
    def from_usd(
        cls, interactive: Decimal | None, batch: Decimal | None, flex: Decimal | None
    ) -> LaneCosts:
        """From exact USD amounts (tests, callers that hold ``Decimal``)."""
        return cls(*(None if v is None else from_usd(v) for v in (interactive, batch, flex)))

    @property
    def savings_fusd(self) -> int | None:
        interactive, batch = self.interactive_fusd, self.batch_fusd
        return None if interactive is None or batch is None else interactive - batch

    def lane_fusd(self, lane: Lane) -> int | None:
        """The cost in ``lane``."""
        if lane is Lane.BATCH:
            return self.batch_fusd
        if lane is Lane.FLEX:
            return self.flex_fusd
        return self.interactive_fusd

    @property
    def interactive(self) -> Decimal | None:
        return _usd(self.interactive_fusd)

    @property
    def batch(self) -> Decimal | None:
        return _usd(self.batch_fusd)

    @property
    def flex(self) -> Decimal | None:
        return _usd(self.flex_fusd)

    @property
    def savings(self) -> Decimal | None:
        return _usd(self.savings_fusd)


UNPRICED = LaneCosts(None, None, None)


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


@dataclass(frozen=True, slots=True)
class LaneRates:
    """One lane's rates in FUSD per token; ``output`` ``None`` = unknown; ``cached`` is the
    cache-read rate (the input rate when none is published)."""

    input: int
    output: int | None
    cached: int

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> int | None:
        """FUSD for the tokens (``input_tokens`` includes the ``cached_tokens``)."""
        fusd = self.input * (input_tokens - cached_tokens) + self.cached * cached_tokens
        if output_tokens == 0:
            return fusd
        output = self.output
        return None if output is None else fusd + output * output_tokens


_Tier = tuple[LaneRates | None, LaneRates | None, LaneRates | None]
_LANES = (Lane.INTERACTIVE, Lane.BATCH, Lane.FLEX)  # the order of a ``_Tier``


def _lane_rates_fusd(period: PricePeriod, lane: Lane, input_tokens: int) -> LaneRates | None:
    rates = lane_rates(period, lane, input_tokens)
    if rates is None or rates.input is None:
        return None
    cached = _first(rates.cached_input, rates.input)
    assert cached is not None
    output = None if rates.output is None else rate_fusd(rates.output)
    return LaneRates(rate_fusd(rates.input), output, rate_fusd(cached))


@dataclass(frozen=True, slots=True)
class PriceTable:
    """A period's integer rates per lane, base tier and (above ``threshold``) long context."""

    standard: _Tier
    long: _Tier
    threshold: int | None

    @classmethod
    def of(cls, period: PricePeriod) -> PriceTable:
        threshold = period.long_context_threshold if period.long_context is not None else None
        standard = tuple(_lane_rates_fusd(period, lane, 0) for lane in _LANES)
        long = (
            standard
            if threshold is None
            else tuple(_lane_rates_fusd(period, lane, threshold + 1) for lane in _LANES)
        )
        return cls(standard, long, threshold)  # type: ignore[arg-type]

    def tier(self, input_tokens: int) -> _Tier:
        threshold = self.threshold
        if threshold is not None and input_tokens > threshold:
            return self.long
        return self.standard

    def lane(self, lane: Lane, input_tokens: int) -> LaneRates | None:
        return self.tier(input_tokens)[_LANES.index(lane)]

    def compare(self, input_tokens: int, output_tokens: int) -> LaneCosts:
        """Every lane's cost for an estimate (no cached tokens)."""
        threshold = self.threshold
        long = threshold is not None and input_tokens > threshold
        interactive, batch, flex = self.long if long else self.standard
        return LaneCosts(
            None if interactive is None else interactive.cost(input_tokens, output_tokens),
            None if batch is None else batch.cost(input_tokens, output_tokens),
            None if flex is None else flex.cost(input_tokens, output_tokens),
        )


_TABLES: dict[tuple[int, date], tuple[ModelEntry, PriceTable | None]] = {}
_TABLES_MAX = 1024


def price_table(entry: ModelEntry, day: date) -> PriceTable | None:
    """The integer rates of ``entry`` on the UTC ``day``, remembered per (entry, day);
    ``None`` before its first price period."""
    key = (id(entry), day)
    found = _TABLES.get(key)
    if found is not None and found[0] is entry:
        return found[1]
    if len(_TABLES) >= _TABLES_MAX:
        _TABLES.clear()
    period = entry.period_at_day(day)
    table = None if period is None else PriceTable.of(period)
    _TABLES[key] = (entry, table)  # the entry is kept alive, so its id is not reused
    return table


def _check_tokens(input_tokens: int, output_tokens: int, cached_input_tokens: int) -> None:
    if min(input_tokens, output_tokens, cached_input_tokens) < 0:
        raise ValueError("token counts must be >= 0")
    if cached_input_tokens > input_tokens:
        raise ValueError(
            f"cached_input_tokens ({cached_input_tokens}) exceed input_tokens ({input_tokens})"
        )


def cost_fusd(
    entry: ModelEntry,
    lane: Lane,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    at: datetime,
) -> int | None:
    """FUSD for one request (``input_tokens`` includes the cached ones); ``None`` = unpriced."""
    _check_tokens(input_tokens, output_tokens, cached_input_tokens)
    table = price_table(entry, utc_day(at))
    rates = None if table is None else table.lane(lane, input_tokens)
    if rates is None:
        return None
    return rates.cost(input_tokens, output_tokens, cached_input_tokens)


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
    found = cost_fusd(
        entry,
        lane,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached_input_tokens,
        at=at,
    )
    return _usd(found)


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


_DAYS: dict[datetime, date] = {}


def compare(entry: ModelEntry | None, estimate: TokenEstimate, at: datetime) -> LaneCosts:
    """The estimated cost in every lane; an unknown model is unpriced everywhere. Equal to
    ``cost(entry, lane, ...)`` for each lane, with the rates looked up once per (model, day)."""
    if entry is None:
        return UNPRICED
    input_tokens, output_tokens = estimate.input_tokens, estimate.output_tokens
    if input_tokens < 0 or output_tokens < 0:
        _check_tokens(input_tokens, output_tokens, 0)
    day = _DAYS.get(at)
    if day is None:
        if len(_DAYS) >= _TABLES_MAX:
            _DAYS.clear()
        day = _DAYS[at] = utc_day(at)
    table = price_table(entry, day)
    if table is None:
        return UNPRICED
    return table.compare(input_tokens, output_tokens)

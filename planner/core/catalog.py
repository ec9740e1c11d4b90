"""The price catalog: per-model, dated prices parsed from a plain mapping.

Prices are dated facts (DESIGN "Principles"): every entry carries its source and the day it was
checked, and its prices come as periods with an ``effective`` day, so a cost is computed with the
price in force when the request is billed (pricing spec §6 D1). The shape is the shared contract
in ``helpers/catalog-format.md``; the YAML file is read by ``planner.config.prices``, never here.

An absent price is *unknown* (``None``), never zero: ``"0"`` is an explicit zero.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from planner.core.model import ProviderKind

_E = TypeVar("_E", bound=StrEnum)


class ModelKind(StrEnum):
    """What a model does; decides which estimate rule and which output price apply."""

    CHAT = "chat"
    EMBEDDING = "embedding"


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per 1,000,000 tokens for one lane of one request; ``None`` = unknown."""

    input: Decimal | None
    output: Decimal | None
    cached_input: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TierRates:
    """Interactive and batch rates of one context tier (the base tier or the long-context one)."""

    input: Decimal | None = None
    output: Decimal | None = None
    batch_input: Decimal | None = None
    batch_output: Decimal | None = None
    cached_input: Decimal | None = None
    batch_cached_input: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PricePeriod:
    """Prices in force from ``effective`` (UTC day; ``None`` = since always) to the next period."""

    standard: TierRates
    effective: date | None = None
    flex: Rates | None = None
    long_context_threshold: int | None = None
    long_context: TierRates | None = None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model of the catalog. ``prices`` is sorted by ``effective`` (undated period first)."""

    model: str
    provider: ProviderKind
    kind: ModelKind
    prices: tuple[PricePeriod, ...]
    source: str | None = None
    checked: date | None = None
    retires: date | None = None
    successor: str | None = None
    routed: bool = False  # from ``retires`` the provider serves ``successor`` at its rates
    encoding: str | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    min_dimensions: int | None = None  # embeddings: the output sizes a request may ask for
    max_dimensions: int | None = None

    def period_at(self, when: datetime) -> PricePeriod | None:
        """The period in force on ``when``'s UTC day, or ``None`` before the first one."""
        return self.period_at_day(utc_day(when))

    def period_at_day(self, day: date) -> PricePeriod | None:
        """The period in force on the UTC ``day``, or ``None`` before the first one."""
        found: PricePeriod | None = None
        for period in self.prices:
            if period.effective is None or period.effective <= day:
                found = period
        return found


PRICE_DECIMALS = 9
"""Decimal places a price (USD per 1M tokens) may have: 10⁻⁹ USD per 1M tokens is 10⁻¹⁵ USD per
token, the store's money scale, so every cost is a whole number of 10⁻¹⁵ USD (``core/cost.py``)."""

_TIER_FIELDS = tuple(TierRates.__dataclass_fields__)
_FLEX_FIELDS = ("flex_input", "flex_output", "flex_cached_input")
_PERIOD_FIELDS = frozenset(
    (*_TIER_FIELDS, *_FLEX_FIELDS, "effective", "long_context_threshold", "long_context")
)
_ENTRY_FIELDS = frozenset(
    (
        "provider",
        "kind",
        "source",
        "checked",
        "retires",
        "successor",
        "routed",
        "encoding",
        "max_input_tokens",
        "max_output_tokens",
        "min_dimensions",
        "max_dimensions",
        "prices",
    )
)


def utc_day(when: datetime) -> date:
    """The UTC calendar day of an aware datetime (a naive one is a programming error)."""
    if when.tzinfo is None:
        raise ValueError("expected a timezone-aware datetime, got a naive one")
    return when.astimezone(UTC).date()


# --- parsing: one small function per value type; ``path`` names the field in errors ---------


def _fail(path: str, message: str) -> ValueError:
    return ValueError(f"{path}: {message}")


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected a mapping, got {type(value).__name__}")
    return value


def _check_keys(data: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    for key in data:
        if key not in allowed:
            raise _fail(f"{path}.{key}", f"unknown field; expected one of {sorted(allowed)}")


def _price(value: Any, path: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _fail(path, f'expected a decimal string such as "0.15", got {value!r}')
    try:
        price = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise _fail(path, f"expected a decimal number, got {value!r}") from None
    if not price.is_finite() or price < 0:
        raise _fail(path, f"expected a finite price >= 0, got {value!r}")
    numerator, denominator = price.as_integer_ratio()
    if numerator * 10**PRICE_DECIMALS % denominator:
        raise _fail(
            path,
            f"{value!r} has more than {PRICE_DECIMALS} decimal places: planner counts money in "
            "10^-15 USD (the store's scale), which is 0.000000001 USD per 1M tokens",
        )
    return price


def _day(value: Any, path: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _fail(path, f"expected a date YYYY-MM-DD, got {value!r}")


def _count(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(path, f"expected a positive integer, got {value!r}")
    return value


def _text(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, f"expected a non-empty string, got {value!r}")
    return value


def _flag(value: Any, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(path, f"expected true or false, got {value!r}")
    return value


def _choice(enum: type[_E], value: Any, path: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        raise _fail(path, f"expected one of {[m.value for m in enum]}, got {value!r}") from None


def _tier(data: Mapping[str, Any], path: str) -> TierRates:
    return TierRates(**{name: _price(data.get(name), f"{path}.{name}") for name in _TIER_FIELDS})


def _flex(data: Mapping[str, Any], path: str) -> Rates | None:
    values = [_price(data.get(name), f"{path}.{name}") for name in _FLEX_FIELDS]
    return None if all(v is None for v in values) else Rates(*values)


def _long_context(data: Mapping[str, Any], path: str) -> tuple[int | None, TierRates | None]:
    threshold = _count(data.get("long_context_threshold"), f"{path}.long_context_threshold")
    raw = data.get("long_context")
    if (threshold is None) != (raw is None):
        raise _fail(path, "long_context_threshold and long_context must be given together")
    if raw is None:
        return None, None
    tier_path = f"{path}.long_context"
    tier = _mapping(raw, tier_path)
    _check_keys(tier, frozenset(_TIER_FIELDS), tier_path)
    return threshold, _tier(tier, tier_path)


def _period(raw: Any, path: str) -> PricePeriod:
    data = _mapping(raw, path)
    _check_keys(data, _PERIOD_FIELDS, path)
    standard = _tier(data, path)
    if standard.input is None:
        raise _fail(f"{path}.input", "required: every price period needs an input price")
    threshold, long_context = _long_context(data, path)
    return PricePeriod(
        standard=standard,
        effective=_day(data.get("effective"), f"{path}.effective"),
        flex=_flex(data, path),
        long_context_threshold=threshold,
        long_context=long_context,
    )


def _periods(raw: Any, path: str) -> tuple[PricePeriod, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(path, "expected a non-empty list of price periods")
    periods = [_period(item, f"{path}[{i}]") for i, item in enumerate(raw)]
    days = [p.effective for p in periods]
    if len(set(days)) != len(days):
        raise _fail(path, "two price periods share the same effective date")
    return tuple(sorted(periods, key=lambda p: p.effective or date.min))


def _required(data: Mapping[str, Any], name: str, path: str) -> Any:
    if data.get(name) is None:
        raise _fail(f"{path}.{name}", "required")
    return data[name]


def parse_entry(model: str, raw: Any) -> ModelEntry:
    """One entry from its mapping; raises ``ValueError("models.<id>.<field>: ...")``."""
    path = f"models.{model}"
    data = _mapping(raw, path)
    _check_keys(data, _ENTRY_FIELDS, path)
    return ModelEntry(
        model=model,
        provider=_choice(ProviderKind, _required(data, "provider", path), f"{path}.provider"),
        kind=_choice(ModelKind, _required(data, "kind", path), f"{path}.kind"),
        prices=_periods(_required(data, "prices", path), f"{path}.prices"),
        source=_text(data.get("source"), f"{path}.source"),
        checked=_day(data.get("checked"), f"{path}.checked"),
        retires=_day(data.get("retires"), f"{path}.retires"),
        successor=_text(data.get("successor"), f"{path}.successor"),
        routed=_flag(data.get("routed"), f"{path}.routed"),
        encoding=_text(data.get("encoding"), f"{path}.encoding"),
        max_input_tokens=_count(data.get("max_input_tokens"), f"{path}.max_input_tokens"),
        max_output_tokens=_count(data.get("max_output_tokens"), f"{path}.max_output_tokens"),
        min_dimensions=_count(data.get("min_dimensions"), f"{path}.min_dimensions"),
        max_dimensions=_count(data.get("max_dimensions"), f"{path}.max_dimensions"),
    )


def _routed_prices(entry: ModelEntry, successor: ModelEntry) -> tuple[PricePeriod, ...]:
    """A routed model's own periods up to its retirement day, then its successor's: the
    successor's period in force that day (re-dated to it) and every later one."""
    assert entry.retires is not None
    cut = entry.retires
    own = [p for p in entry.prices if p.effective is None or p.effective < cut]
    taken = [p for p in successor.prices if p.effective is None or p.effective <= cut]
    later = [p for p in successor.prices if p.effective is not None and p.effective > cut]
    handover = [replace(taken[-1], effective=cut)] if taken else []
    return (*own, *handover, *later)


def resolve_routing(entries: Iterable[ModelEntry]) -> list[ModelEntry]:
    """Give every ``routed`` entry its successor's prices from its retirement day, so a cost
    after that day follows what the provider bills (pricing spec §6 D7)."""
    by_model = {e.model: e for e in entries}
    resolved: list[ModelEntry] = []
    for entry in by_model.values():
        if not entry.routed:
            resolved.append(entry)
            continue
        path = f"models.{entry.model}.routed"
        if entry.retires is None or entry.successor is None:
            raise _fail(path, "a routed model needs both 'retires' and 'successor'")
        successor = by_model.get(entry.successor)
        if successor is None:
            raise _fail(
                path, f"its successor {entry.successor!r} is not in the catalog (its rates apply)"
            )
        resolved.append(replace(entry, prices=_routed_prices(entry, successor)))
    return resolved


# --- merging overrides (config ``models:``) onto the shipped mapping -------------------------


def _period_key(raw: Any, path: str) -> date | None:
    return _day(_mapping(raw, path).get("effective"), f"{path}.effective")


def _merge_periods(base: list[Any], override: Any, path: str) -> list[Any]:
    """Override periods update the base period with the same ``effective`` day, else are added."""
    if not isinstance(override, list):
        raise _fail(path, "expected a list of price periods")
    merged = [dict(p) for p in base]
    index = {_period_key(p, path): i for i, p in enumerate(merged)}
    for i, period in enumerate(override):
        key = _period_key(period, f"{path}[{i}]")
        if key in index:
            merged[index[key]].update(period)
        else:
            merged.append(dict(period))
    return merged


def _merge_entry(base: Mapping[str, Any], override: Mapping[str, Any], path: str) -> dict[str, Any]:
    merged = dict(base)
    for name, value in override.items():
        if name == "prices":
            merged[name] = _merge_periods(list(base.get("prices") or []), value, f"{path}.prices")
        else:
            merged[name] = value
    return merged


class Catalog:
    """All known models by id (no ``gemini/`` prefix). Immutable; ``merged`` returns a new one."""

    __slots__ = ("_entries", "_raw")

    def __init__(self, entries: Iterable[ModelEntry], raw: Mapping[str, Mapping[str, Any]]):
        self._entries = {e.model: e for e in entries}
        self._raw = raw

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Catalog:
        """Parse ``{model id: entry mapping}`` (the value of a ``models:`` key)."""
        models = _mapping(data, "models")
        entries = resolve_routing(parse_entry(str(model), raw) for model, raw in models.items())
        return cls(entries, copy.deepcopy({str(k): v for k, v in models.items()}))

    def merged(self, overrides: Mapping[str, Mapping[str, Any]]) -> Catalog:
        """This catalog with config overrides applied: fields replace, periods merge by day."""
        raw = dict(self._raw)
        for model, override in _mapping(overrides, "models").items():
            path = f"models.{model}"
            raw[model] = _merge_entry(raw.get(model, {}), _mapping(override, path), path)
        return Catalog.from_mapping(raw)

    def get(self, model: str) -> ModelEntry | None:
        return self._entries.get(model)

    def models(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[ModelEntry]:
        """Every entry, in model order."""
        return [self._entries[model] for model in sorted(self._entries)]

    def family_of(self, model: str) -> ProviderKind | None:
        entry = self._entries.get(model)
        return None if entry is None else entry.provider

    def price_at(self, model: str, when: datetime) -> PricePeriod | None:
        """The period in force for ``model`` on ``when``; ``None`` if unknown model or too early."""
        entry = self._entries.get(model)
        return None if entry is None else entry.period_at(when)

"""The catalog: the shipped file is complete and valid, bad data gets precise errors, overrides
merge field by field and period by period, and the stale / retired warnings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from planner.config.prices import shipped_catalog
from planner.core.catalog import Catalog, ModelKind, utc_day
from planner.core.model import ProviderKind
from planner.core.retirement import (
    CatalogWarning,
    WarningKind,
    catalog_warnings,
    is_retired,
    is_stale,
    retires_within,
)

NOW = datetime(2026, 11, 28, 9, tzinfo=UTC)

GEMINI_MODELS = {
    "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-3-flash-preview",
    "gemini-3.1-pro-preview", "gemini-3.1-flash-lite", "gemini-3.5-flash",
    "gemini-3.5-flash-lite", "gemini-3.6-flash", "gemini-3.7-flash", "gemini-3.8-flash",
    "gemini-embedding-001", "gemini-embedding-2", "gemini-2.0-flash", "gemini-3-pro-preview",
}  # fmt: skip
OPENAI_MODELS = {
    "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o",
    "gpt-4o-mini", "o3", "o4-mini", "text-embedding-3-small", "text-embedding-3-large",
}  # fmt: skip


def _minimal(**extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "kind": "chat", "prices": [{"input": "1"}], **extra}


# --- the shipped file ---------------------------------------------------------------------


def test_shipped_catalog_lists_every_spec_model() -> None:
    catalog = shipped_catalog()
    assert set(catalog.models()) == GEMINI_MODELS | OPENAI_MODELS
    assert {m for m in catalog.models() if catalog.family_of(m) is ProviderKind.GEMINI} == (
        GEMINI_MODELS
    )
    assert catalog.family_of("nope") is None
    assert shipped_catalog() is catalog  # cached


def test_every_shipped_entry_has_source_checked_and_batch_price() -> None:
    for entry in shipped_catalog().entries():
        assert entry.source is not None and entry.source.startswith("https://"), entry.model
        assert entry.checked == date(2026, 11, 24), entry.model
        for period in entry.prices:
            assert period.standard.batch_input is not None, entry.model
            assert period.standard.output is not None, entry.model


@pytest.mark.parametrize(
    ("model", "field", "expected"),
    [
        # spot checks against the spec's tables (§1.1, §2.1), as exact decimals
        ("gemini-2.5-pro", "input", "1.25"),
        ("gemini-3.1-flash-lite", "batch_cached_input", "0.0125"),
        ("gemini-3.5-flash", "batch_cached_input", "0.075"),
        ("gemini-embedding-001", "batch_input", "0.075"),
        ("gpt-5", "batch_cached_input", "0.0625"),
        ("gpt-4o", "cached_input", "1.25"),
        ("o4-mini", "batch_output", "2.2"),
        ("text-embedding-3-large", "batch_input", "0.065"),
    ],
)
def test_shipped_figures(model: str, field: str, expected: str) -> None:
    entry = shipped_catalog().get(model)
    assert entry is not None
    assert getattr(entry.prices[0].standard, field) == Decimal(expected)


def test_shipped_lifecycle_and_metadata() -> None:
    catalog = shipped_catalog()
    nano = catalog.get("gpt-4.1-nano")
    assert nano is not None and nano.retires == date(2026, 10, 23)
    assert nano.successor == "gpt-5.6-luna" and nano.encoding == "o200k_base"
    pro = catalog.get("gemini-2.5-pro")
    assert pro is not None and pro.retires == date(2026, 12, 1)
    assert pro.prices[0].long_context_threshold == 200_000
    assert pro.prices[0].long_context is not None
    assert pro.prices[0].long_context.batch_output == Decimal("7.5")
    emb = catalog.get("gemini-embedding-2")
    assert emb is not None and emb.kind is ModelKind.EMBEDDING
    flash = catalog.get("gemini-3.8-flash")
    assert flash is not None and [p.effective for p in flash.prices] == [None, date(2027, 1, 1)]


def test_price_at_picks_the_period_in_force() -> None:
    catalog = shipped_catalog()
    late = catalog.price_at("gemini-3.7-flash", datetime(2027, 3, 1, tzinfo=UTC))
    early = catalog.price_at("gemini-3.7-flash", NOW)
    assert late is not None and late.standard.input == Decimal("1.5")
    assert early is not None and early.standard.input == Decimal("0.75")
    assert catalog.price_at("unknown-model", NOW) is None


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        utc_day(datetime(2026, 1, 1))  # noqa: DTZ001


# --- validation errors name the field -------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("not a mapping", "models.m: expected a mapping, got str"),
        (_minimal(colour="red"), "models.m.colour: unknown field"),
        ({"kind": "chat", "prices": [{"input": "1"}]}, "models.m.provider: required"),
        (_minimal(provider="azure"), "models.m.provider: expected one of ['gemini', 'openai']"),
        (_minimal(kind="image"), "models.m.kind: expected one of"),
        (_minimal(prices=[]), "models.m.prices: expected a non-empty list"),
        (_minimal(prices="1"), "models.m.prices: expected a non-empty list"),
        (_minimal(prices=[{"output": "1"}]), "models.m.prices[0].input: required"),
        (_minimal(prices=[{"input": 0.15}]), "models.m.prices[0].input: expected a decimal string"),
        (_minimal(prices=[{"input": True}]), "models.m.prices[0].input: expected a decimal string"),
        (
            _minimal(prices=[{"input": "abc"}]),
            "models.m.prices[0].input: expected a decimal number",
        ),
        (_minimal(prices=[{"input": "-1"}]), "models.m.prices[0].input: expected a finite price"),
        (_minimal(prices=[{"input": "NaN"}]), "models.m.prices[0].input: expected a finite price"),
        (_minimal(prices=[{"input": "1", "flex_input": "x"}]), "models.m.prices[0].flex_input"),
        (_minimal(prices=[{"input": "1", "bogus": "1"}]), "models.m.prices[0].bogus: unknown"),
        (_minimal(prices=["1"]), "models.m.prices[0]: expected a mapping"),
        (
            _minimal(prices=[{"input": "1", "effective": "2026-13-01"}]),
            "models.m.prices[0].effective: expected a date YYYY-MM-DD",
        ),
        (
            _minimal(prices=[{"input": "1", "effective": 20260101}]),
            "models.m.prices[0].effective: expected a date",
        ),
        (
            _minimal(prices=[{"input": "1", "effective": datetime(2026, 1, 1, tzinfo=UTC)}]),
            "models.m.prices[0].effective: expected a date",
        ),
        (
            _minimal(prices=[{"input": "1"}, {"input": "2"}]),
            "models.m.prices: two price periods share the same effective date",
        ),
        (
            _minimal(prices=[{"input": "1", "long_context_threshold": 200000}]),
            "models.m.prices[0]: long_context_threshold and long_context must be given together",
        ),
        (
            _minimal(prices=[{"input": "1", "long_context_threshold": 0, "long_context": {}}]),
            "models.m.prices[0].long_context_threshold: expected a positive integer",
        ),
        (
            _minimal(prices=[{"input": "1", "long_context_threshold": 9, "long_context": []}]),
            "models.m.prices[0].long_context: expected a mapping",
        ),
        (
            _minimal(
                prices=[{"input": "1", "long_context_threshold": 9, "long_context": {"flex": 1}}]
            ),
            "models.m.prices[0].long_context.flex: unknown field",
        ),
        (_minimal(max_output_tokens=True), "models.m.max_output_tokens: expected a positive"),
        (_minimal(max_input_tokens="8k"), "models.m.max_input_tokens: expected a positive"),
        (_minimal(source=""), "models.m.source: expected a non-empty string"),
        (_minimal(encoding=5), "models.m.encoding: expected a non-empty string"),
        (_minimal(checked="yesterday"), "models.m.checked: expected a date"),
    ],
)
def test_bad_entries(entry: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Catalog.from_mapping({"m": entry})
    assert str(caught.value).startswith(message)


def test_from_mapping_needs_a_mapping() -> None:
    with pytest.raises(ValueError, match=r"^models: expected a mapping"):
        Catalog.from_mapping([])  # type: ignore[arg-type]


def test_parsed_values() -> None:
    catalog = Catalog.from_mapping(
        {
            "m": _minimal(
                checked=date(2026, 1, 2),
                retires="2027-01-01",
                prices=[
                    {"input": " 0.5 ", "output": 3, "effective": date(2026, 6, 1)},
                    {"input": "1", "flex_output": "2"},
                ],
            )
        }
    )
    entry = catalog.get("m")
    assert entry is not None
    assert entry.checked == date(2026, 1, 2) and entry.retires == date(2027, 1, 1)
    # sorted: the undated period first
    assert [p.effective for p in entry.prices] == [None, date(2026, 6, 1)]
    assert entry.prices[1].standard.input == Decimal("0.5")
    assert entry.prices[1].standard.output == Decimal(3)
    assert entry.prices[1].flex is None
    assert entry.prices[0].flex is not None and entry.prices[0].flex.output == Decimal(2)


# --- overrides --------------------------------------------------------------------------------


def test_override_existing_field_and_period() -> None:
    catalog = shipped_catalog().merged(
        {"gpt-4o-mini": {"prices": [{"input": "0.2"}], "retires": None, "checked": "2026-11-27"}}
    )
    entry = catalog.get("gpt-4o-mini")
    assert entry is not None
    # the undated period is updated field by field: input replaced, output kept
    assert entry.prices[0].standard.input == Decimal("0.2")
    assert entry.prices[0].standard.output == Decimal("0.6")
    assert entry.retires is None and entry.checked == date(2026, 11, 27)
    # the shipped catalog itself is untouched
    shipped = shipped_catalog().get("gpt-4o-mini")
    assert shipped is not None and shipped.prices[0].standard.input == Decimal("0.15")


def test_override_adds_a_dated_period_and_a_new_model() -> None:
    catalog = shipped_catalog().merged(
        {
            "gpt-4o": {"prices": [{"effective": "2027-02-01", "input": "3", "output": "12"}]},
            "my-local-model": {"provider": "openai", "kind": "chat", "prices": [{"input": "0"}]},
        }
    )
    entry = catalog.get("gpt-4o")
    assert entry is not None and len(entry.prices) == 2
    assert catalog.price_at("gpt-4o", datetime(2027, 2, 1, tzinfo=UTC)).standard.input == 3  # type: ignore[union-attr]
    assert catalog.family_of("my-local-model") is ProviderKind.OPENAI


def test_override_updates_a_dated_period() -> None:
    catalog = shipped_catalog().merged(
        {"gemini-3.6-flash": {"prices": [{"effective": date(2027, 1, 1), "input": "1.2"}]}}
    )
    entry = catalog.get("gemini-3.6-flash")
    assert entry is not None and len(entry.prices) == 2
    assert entry.prices[1].standard.input == Decimal("1.2")
    assert entry.prices[1].standard.output == Decimal("7.5")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"new-model": {"kind": "chat", "prices": [{"input": "1"}]}}, "models.new-model.provider"),
        ({"gpt-4o": "cheap"}, "models.gpt-4o: expected a mapping"),
        ({"gpt-4o": {"prices": {"input": "1"}}}, "models.gpt-4o.prices: expected a list"),
        ({"gpt-4o": {"prices": ["x"]}}, "models.gpt-4o.prices[0]: expected a mapping"),
        ({"gpt-4o": {"prices": [{"input": 1.5}]}}, "models.gpt-4o.prices[0].input"),
    ],
)
def test_bad_overrides(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        shipped_catalog().merged(overrides)
    assert str(caught.value).startswith(message)


# --- warnings -----------------------------------------------------------------------------------


def _entry(**extra: Any) -> Any:
    entry = Catalog.from_mapping({"m": _minimal(**extra)}).get("m")
    assert entry is not None
    return entry


@pytest.mark.parametrize(
    ("checked", "stale"),
    [
        ("2026-08-30", False),  # 90 days before 2026-11-28: not more than 90
        ("2026-08-29", True),  # 91 days
        (None, True),  # never checked
    ],
)
def test_is_stale(checked: str | None, stale: bool) -> None:
    assert is_stale(_entry(checked=checked), NOW, timedelta(days=90)) is stale


@pytest.mark.parametrize(
    ("retires", "retired", "within_30"),
    [
        ("2026-11-28", True, False),  # shuts down today
        ("2026-10-23", True, False),
        ("2026-11-29", False, True),
        ("2026-12-28", False, True),  # exactly 30 days away
        ("2026-12-29", False, False),
        (None, False, False),
    ],
)
def test_retirement(retires: str | None, retired: bool, within_30: bool) -> None:
    entry = _entry(retires=retires)
    assert is_retired(entry, NOW) is retired
    assert retires_within(entry, NOW, timedelta(days=30)) is within_30


def test_catalog_warnings_on_shipped_catalog() -> None:
    found = catalog_warnings(shipped_catalog(), NOW)
    by_model = {(w.model, w.kind) for w in found}
    assert ("gpt-4.1-nano", WarningKind.RETIRED) in by_model
    assert ("o4-mini", WarningKind.RETIRED) in by_model
    assert ("gemini-2.5-pro", WarningKind.RETIRING) in by_model  # 2026-12-01
    assert ("gpt-5", WarningKind.RETIRING) in by_model  # 2026-12-11
    assert ("gpt-4o", WarningKind.RETIRING) not in by_model  # 2027-01-14: > 30 days
    assert not any(w.kind is WarningKind.STALE for w in found)  # checked 4 days ago
    nano = next(w for w in found if w.model == "gpt-4.1-nano")
    assert nano.message == "retired on 2026-10-23; successor gpt-5.6-luna"


def test_stale_warning_message() -> None:
    catalog = Catalog.from_mapping({"m": _minimal(retires="2026-12-01")})
    assert catalog_warnings(catalog, NOW) == [
        CatalogWarning("m", WarningKind.STALE, "prices checked never"),
        CatalogWarning("m", WarningKind.RETIRING, "retires on 2026-12-01"),
    ]

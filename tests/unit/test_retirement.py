"""Retired models: a routed model is billed at its successor's rates from its retirement day
(pricing spec §6 D7), and plan / validate / run name each retired or retiring model once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from planner.config.prices import shipped_catalog
from planner.core.catalog import Catalog
from planner.core.cost import cost
from planner.core.model import Lane
from planner.core.retirement import CatalogWarning, WarningKind, retirement_warnings

MILLION = 1_000_000
K100 = 100_000


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day + "T12:00:00+00:00")


# (model, lane, day, input, cached, output, expected USD)
COSTS = [
    # before retirement, gemini-2.5-pro's own batch rates (below its 200k long-context tier):
    # 100k in * 0.625/M + 100k out * 5/M
    ("gemini-2.5-pro", Lane.BATCH, "2026-11-30", K100, 0, K100, "0.5625"),
    # from 2026-12-01 routed to gemini-3.8-flash: 100k * 0.375/M + 100k * 1.875/M
    ("gemini-2.5-pro", Lane.BATCH, "2026-12-06", K100, 0, K100, "0.225"),
    # gemini-3.8-flash doubles on 2027-01-01, and so does the routed model: 0.075 + 0.375
    ("gemini-2.5-pro", Lane.BATCH, "2027-01-02", K100, 0, K100, "0.45"),
    # interactive too: 100k * 0.75/M + 100k * 3.75/M (was 1.25 and 10)
    ("gemini-2.5-pro", Lane.INTERACTIVE, "2026-12-06", K100, 0, K100, "0.45"),
    # gemini-2.5-flash batch, 1M cached of 2M in: 1M * 0.15/M + 1M * 0.03/M (own cache rate)
    ("gemini-2.5-flash", Lane.BATCH, "2026-11-30", 2 * MILLION, MILLION, 0, "0.18"),
    # routed to gemini-3.5-flash-lite, whose batch cache rate is 0.015: 0.15 + 0.015
    ("gemini-2.5-flash", Lane.BATCH, "2026-12-06", 2 * MILLION, MILLION, 0, "0.165"),
    # a model shut down (not routed) keeps the price the catalog records: o4-mini 0.55 + 2.2
    ("o4-mini", Lane.BATCH, "2026-12-06", MILLION, 0, MILLION, "2.75"),
]


@pytest.mark.parametrize(("model", "lane", "day", "tokens_in", "cached", "out", "usd"), COSTS)
def test_cost_after_retirement_follows_the_catalog(
    model: str, lane: Lane, day: str, tokens_in: int, cached: int, out: int, usd: str
) -> None:
    entry = shipped_catalog().get(model)
    assert entry is not None
    found = cost(
        entry,
        lane,
        input_tokens=tokens_in,
        cached_input_tokens=cached,
        output_tokens=out,
        at=_at(day),
    )
    assert found == Decimal(usd)


def _entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"provider": "gemini", "kind": "chat", "prices": [{"input": "1"}]}
    return {**base, **fields}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"routed": True, "successor": "b"}, "models.a.routed: a routed model needs both"),
        ({"routed": True, "retires": "2026-12-01"}, "models.a.routed: a routed model needs both"),
        (
            {"routed": True, "retires": "2026-12-01", "successor": "zz"},
            "models.a.routed: its successor 'zz' is not in the catalog",
        ),
        ({"routed": "yes"}, "models.a.routed: expected true or false"),
    ],
)
def test_bad_routing_is_a_precise_error(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Catalog.from_mapping({"a": _entry(**fields), "b": _entry()})


def test_routing_applies_to_config_overrides() -> None:
    catalog = (
        shipped_catalog()
        .merged(
            {"my-model": {**_entry(), "retires": "2026-12-02", "successor": "gemini-3.8-flash"}}
        )
        .merged({"my-model": {"routed": True}})
    )
    period = catalog.price_at("my-model", _at("2026-12-06"))
    assert period is not None and period.standard.input == Decimal("0.75")
    before = catalog.price_at("my-model", _at("2026-12-01"))
    assert before is not None and before.standard.input == Decimal("1")


def test_retirement_warnings_name_each_model_once() -> None:
    catalog = shipped_catalog()
    used = ["gemini-2.5-flash", "gpt-5", "gemini-2.5-flash", "gemini-3.5-flash-lite", "o4-mini"]
    entries = [e for e in (catalog.get(m) for m in used) if e is not None]
    assert retirement_warnings(entries, _at("2026-12-06")) == [
        CatalogWarning(
            "gemini-2.5-flash",
            WarningKind.RETIRED,
            "retired on 2026-12-01; the provider routes it to gemini-3.5-flash-lite, "
            "billed at that model's rates",
        ),
        CatalogWarning(
            "gpt-5", WarningKind.RETIRING, "retires on 2026-12-11; successor gpt-5.6-sol"
        ),
        CatalogWarning(
            "o4-mini", WarningKind.RETIRED, "retired on 2026-10-23; successor gpt-5.6-terra"
        ),
    ]


def test_retiring_routed_model_says_where_it_goes() -> None:
    entry = shipped_catalog().get("gemini-2.5-flash")
    assert entry is not None
    (warning,) = retirement_warnings([entry], datetime(2026, 11, 20, tzinfo=UTC))
    assert warning.kind is WarningKind.RETIRING
    assert warning.message == (
        "retires on 2026-12-01; successor gemini-3.5-flash-lite "
        "(then routed to gemini-3.5-flash-lite, billed at its rates)"
    )

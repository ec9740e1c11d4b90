"""`planner status`, `report` and `prices` never show a cut amount or a cut name, whatever the
terminal's width, and stay tables at 80 columns (rendered with fixed-width rich Consoles)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from rich.console import Console

from planner.cli_render import render_prices, render_report, render_status
from planner.config.prices import shipped_catalog

DATA: dict[str, Any] = {
    "requests": {"succeeded": 2_000_000, "queued": 0},
    "batches": {"collected": 41},
    "spend": [
        {
            "source": "corpus",
            "model": "text-embedding-3-small",
            "lane": "batch",
            "requests": 2_000_000,
            "cost_usd": "0.000000270",
            "interactive_equivalent_usd": "1234567.891",
            "savings_usd": "1234567.890999730",
        },
        {
            "source": "corpus",
            "model": "gemini-embedding-001",
            "lane": "interactive",
            "requests": 3,
            "cost_usd": None,
            "interactive_equivalent_usd": None,
            "savings_usd": None,
        },
    ],
}


def _render(width: int) -> str:
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    render_status(console, DATA)
    return console.export_text()


@pytest.mark.parametrize("width", [40, 60, 80, 100, 140, 200])
def test_every_amount_and_count_is_shown_whole(width: int) -> None:
    text = _render(width)
    assert "…" not in text
    for whole in ("$0.00000027", "$1,234,567.891", "2,000,000", "unpriced", "41"):
        assert whole in text, (width, whole, text)
    # long names may fold across lines (never cut with an ellipsis, checked above); exact
    # amounts are wide, so at 80 columns the model id folds into short pieces
    assert "text-em" in text


def test_a_wide_terminal_gets_a_table_and_a_narrow_one_gets_blocks() -> None:
    wide, narrow = _render(200), _render(60)
    assert "┃ source" in wide and "source: corpus" not in wide
    assert "source: corpus" in narrow and "saved: $1,234,567.89099973" in narrow


def _console(width: int) -> Console:
    return Console(width=width, record=True, force_terminal=False, color_system=None)


def test_prices_at_80_columns_show_every_model_whole() -> None:
    console = _console(80)
    catalog = shipped_catalog()
    render_prices(
        console, catalog, model=None, now=datetime(2026, 12, 6, tzinfo=UTC), as_json=False
    )
    text = console.export_text()
    assert "…" not in text
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    for model in catalog.models():
        assert any(line.startswith(model + " ") for line in lines), model


REPORT: dict[str, Any] = {
    "since": None,
    "until": "2026-12-06T12:00:00+00:00",
    "rows": [
        {
            "source": "support-tickets",
            "model": "gemini-3.1-pro-preview",
            "lane": "batch",
            "requests": 3_120,
            "cost_usd": "12.345",
            "interactive_equivalent_usd": "24.69",
            "savings_usd": "12.345",
        },
        {
            "source": "nightly",
            "model": "text-embedding-3-large",
            "lane": "interactive",
            "requests": 7,
            "cost_usd": "0.0042",
            "interactive_equivalent_usd": "0.0042",
            "savings_usd": "0",
        },
    ],
    "totals": {
        "requests": 3_127,
        "cost_usd": "12.3492",
        "interactive_equivalent_usd": "24.6942",
        "savings_usd": "12.345",
        "unpriced": 0,
    },
}


@pytest.mark.parametrize("width", [80, 120])
def test_report_and_status_spend_are_tables(width: int) -> None:
    for render, data in (
        (render_report, REPORT),
        (render_status, {"requests": {}, "batches": {}, "spend": REPORT["rows"]}),
    ):
        console = _console(width)
        render(console, data)
        text = console.export_text()
        assert "source: " not in text and "model: " not in text, text  # not key/value blocks
        assert "…" not in text
        assert max(len(line) for line in text.splitlines()) <= width
        names = ("support-tickets", "gemini-3.1-pro-preview", "text-embedding-3-large")
        if width >= 120:  # room for every name whole; at 80 the model ids fold
            assert all(name in text for name in names), text
        for amount in ("$12.345", "$24.69", "3,120", "$0.0042"):
            assert amount in text, (amount, text)


def _dollars(cell: str) -> Decimal:
    return Decimal(cell.strip().removeprefix("$").replace(",", ""))


@pytest.mark.parametrize("data", [REPORT, {"rows": DATA["spend"][:1], "totals": None}])
def test_spent_plus_saved_is_the_interactive_equivalent_as_shown(data: dict[str, Any]) -> None:
    """Issue 11: each amount was rounded on its own, so the shown spent + saved was not the
    shown interactive equivalent ($12.34 + $12.34 against $24.69 for REPORT's first row).
    Every row and the total must add up as printed."""
    console = Console(width=200, record=True, force_terminal=False, color_system=None)
    if data["totals"] is None:
        render_status(console, {"requests": {}, "batches": {}, "spend": data["rows"]})
    else:
        render_report(console, data)
    rows = [line for line in console.export_text().splitlines() if line.count("$") == 3]
    assert len(rows) == len(data["rows"]) + (data["totals"] is not None)
    for line in rows:
        spent, equivalent, saved = (_dollars(c) for c in line.split("│")[-4:-1])
        assert spent + saved == equivalent, line

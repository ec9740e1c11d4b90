"""`planner status` never shows a cut amount, whatever the terminal's width."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from planner.cli_render import render_status

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
    for whole in ("$0.000000270", "$1,234,567.89", "2,000,000", "unpriced", "41"):
        assert whole in text, (width, whole, text)
    # long names may fold across lines (never cut with an ellipsis, checked above)
    assert "text-embedd" in text and "-3-small" in text


def test_a_wide_terminal_gets_a_table_and_a_narrow_one_gets_blocks() -> None:
    wide, narrow = _render(200), _render(60)
    assert "┃ source" in wide and "source: corpus" not in wide
    assert "source: corpus" in narrow and "saved: $1,234,567.89" in narrow

"""Flex requests are billed at the tier the provider says answered them (issue 11).

A flex request may be answered by the default tier (OpenAI ``service_tier: "default"``, Gemini
``usageMetadata.serviceTier: "standard"``); it then costs the interactive price and saves
nothing. The sandbox's ``flex_default`` fault answers every flex call that way; its ledger
shows the lane it billed, and the store's ledger, the result lines and ``report`` must agree.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from planner.config import load_config
from planner.runtime.wiring import build_context
from planner.store.tables import LEDGER
from tests.integration.test_run_once import ledger_of, price, read_sink, run_until_settled

MILLION = Decimal(1_000_000)

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
  gemini: {kind: gemini}
sources:
  spool: {kind: jsonl_dir, path: spool, default_model: gpt-5-mini, settle: 0s, sink: out}
sinks:
  out: {kind: jsonl_dir, path: results}
policies:
  default: {batch_window: 24h, default_deadline: 48h, allow_flex: true, flex_latency: 15m}
"""

LINES = [  # a deadline too close for a batch, far enough for flex
    {"id": "flex-openai", "prompt": "Classify this ticket.", "model": "gpt-5-mini"},
    {"id": "flex-gemini", "prompt": "Classify this ticket.", "model": "gemini-2.5-flash"},
]


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "spool").mkdir()
    text = "".join(json.dumps(line | {"deadline": "1h"}) + "\n" for line in LINES)
    (tmp_path / "spool" / "flex.jsonl").write_text(text)
    (tmp_path / "planner.yaml").write_text(CONFIG)
    return tmp_path


def _expected_cost(record: dict[str, Any], lane: str) -> Decimal:
    prefix = {"flex": "flex_", "interactive": ""}[lane]
    usage = record["usage"]
    return (
        usage["input_tokens"] * price(record["model"], prefix + "input")
        + usage["output_tokens"] * price(record["model"], prefix + "output")
    ) / MILLION


@pytest.mark.parametrize(
    ("faults", "tiers", "lane"),
    [
        (None, {"flex-openai": "flex", "flex-gemini": "flex"}, "flex"),
        ("flex_default=1", {"flex-openai": "default", "flex-gemini": "standard"}, "interactive"),
    ],
    ids=["answered-by-flex", "answered-by-default"],
)
def test_a_flex_request_is_billed_at_the_tier_that_answered(
    workspace: Path, sandbox_factory: Any, faults: str | None, tiers: dict[str, str], lane: str
) -> None:
    sandbox = sandbox_factory(faults)
    run_until_settled(workspace, sandbox, passes=2)
    results, dead = read_sink(workspace / "results")
    assert not dead and set(results) == set(tiers)
    billed = {r["key"]: r for r in ledger_of(sandbox)["requests"]}
    for key, (record,) in results.items():
        assert record["service_tier"] == tiers[key]
        assert billed[key]["lanes"] == {lane: 1}  # the provider billed it at that tier
        assert record["lane"] == lane
        assert Decimal(record["cost_usd"]) == _expected_cost(record, lane)
        saved = Decimal(record["savings_usd"])
        assert (saved == 0) == (lane == "interactive") and saved >= 0
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url=sandbox.url)
    with ctx.session_factory() as session:
        rows = session.execute(select(LEDGER.c.lane, LEDGER.c.cost_usd)).all()
    assert sorted(r.lane for r in rows) == [lane, lane]
    assert sum(r.cost_usd for r in rows) == sum(Decimal(r[0]["cost_usd"]) for r in results.values())

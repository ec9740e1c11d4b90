"""`planner plan --json` with a daily budget: what fits is planned, the rest shows as held.

The spool's batch cost is several times the budget; the expected split is computed here from
the shipped prices and tiktoken, independently of planner's code.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from tests.acceptance.test_cli_plan import MILLION, chat_tokens, price, run

REQUESTS = 40
MAX_TOKENS = 4000
CONFIG = """
state_dir: state
providers:
  openai: {{kind: openai}}
sources:
  spool: {{kind: jsonl_dir, path: spool, default_model: gpt-4o-mini}}
policies:
  default:
    batch_window: 24h
    default_deadline: 48h
    budget:
      daily_usd: "{daily}"
      timezone: UTC
      at_cap: {at_cap}
"""


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Summarise support ticket {i:03d} in one line."}]


@pytest.fixture()
def spool(tmp_path: Path) -> Path:
    folder = tmp_path / "spool"
    folder.mkdir()
    with (folder / "work.jsonl").open("w") as f:
        for i in range(REQUESTS):
            body = {"model": "gpt-4o-mini", "messages": _messages(i), "max_tokens": MAX_TOKENS}
            line = {"custom_id": f"t-{i}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**line, "body": body}) + "\n")
    os.utime(folder / "work.jsonl", (1_000_000_000, 1_000_000_000))
    return tmp_path


def _batch_cost(i: int) -> Decimal:
    tokens = chat_tokens(_messages(i), "o200k_base")
    return (
        tokens * price("gpt-4o-mini", "batch_input")
        + MAX_TOKENS * price("gpt-4o-mini", "batch_output")
    ) / MILLION


@pytest.mark.parametrize("at_cap", ["hold", "reject"])
def test_plan_keeps_the_planned_cost_within_the_daily_budget(spool: Path, at_cap: str) -> None:
    costs = [_batch_cost(i) for i in range(REQUESTS)]
    daily = Decimal("0.02")
    assert sum(costs) > 2 * daily  # the spool costs more than twice the budget by batch
    (spool / "planner.yaml").write_text(CONFIG.format(daily=daily, at_cap=at_cap))
    done = run("plan", "-c", str(spool / "planner.yaml"), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    # first come, first served: request i fits while the running total stays within the budget
    fits, total = 0, Decimal(0)
    for cost in costs:
        if total + cost <= daily:
            fits, total = fits + 1, total + cost
    assert 0 < fits < REQUESTS
    totals = report["totals"]
    assert Decimal(totals["planned_usd"]) == total <= daily
    over = "held" if at_cap == "hold" else "rejected"
    assert totals["lanes"] == {"batch": fits, over: REQUESTS - fits}
    assert totals["reasons"] == {
        "deadline_allows_batch": fits,
        "budget_exhausted": REQUESTS - fits,
    }
    [budget] = report["budgets"]
    assert budget["budget"] == "policy:default" and budget["period"] == "day"
    assert Decimal(budget["limit_usd"]) == daily
    assert Decimal(budget["planned_usd"]) == total
    assert Decimal(budget["spent_usd"]) == 0 and Decimal(budget["reserved_usd"]) == 0
    assert Decimal(budget["remaining_usd"]) == daily - total
    held = budget["held_requests"] if at_cap == "hold" else budget["rejected_requests"]
    assert held == REQUESTS - fits
    assert Decimal(budget["held_usd"]) == sum(costs[fits:])
    # the dry run created no store
    assert not (spool / "state" / "planner.db").exists()


def test_plan_text_shows_the_budgets(spool: Path) -> None:
    (spool / "planner.yaml").write_text(CONFIG.format(daily="0.02", at_cap="hold"))
    done = run("plan", "-c", str(spool / "planner.yaml"))
    assert done.returncode == 0, done.stderr
    assert "budgets (this plan included)" in done.stdout
    text = " ".join(done.stdout.split())  # however the terminal wrapped it
    assert "policy:default per day (at cap: hold): limit $0.02" in text
    assert "this plan $0.0" in text and ", held " in text

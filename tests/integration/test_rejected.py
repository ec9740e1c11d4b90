"""Rejected requests: no savings in ``plan``, one dead-letter line each in a run (issue 11).

``plan`` counted a rejected request's interactive price as savings, and a run gave it no output
line at all. Two kinds of rejection here: a Gemini model while only OpenAI is configured
(``no_provider``, priced, so it used to inflate the savings) and a request too large for any
batch (``too_large``, rejected by the packer after the policy chose batch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from planner.config import load_config
from planner.runtime.store_commands import report
from tests.integration.test_run_once import ledger_of, read_sink, run_until_settled

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
sources:
  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, sink: out}
sinks:
  out: {kind: jsonl_dir, path: results}
policies:
  default: {batch_window: 24h, default_deadline: 48h}
limits:
  openai: {max_bytes: 4KB}
"""

GOOD = [
    {"id": f"ok-{i}", "prompt": f"Summarise ticket {i}.", "max_output_tokens": 20} for i in range(3)
]
REJECTED = {
    "no-provider": {"id": "no-provider", "prompt": "Hello", "model": "gemini-2.5-flash"},
    "too-large": {"id": "too-large", "prompt": "word " * 2000, "max_output_tokens": 20},
}


def _workspace(root: Path, lines: list[dict[str, Any]]) -> Path:
    (root / "spool").mkdir(parents=True)
    (root / "spool" / "work.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    os.utime(root / "spool" / "work.jsonl", (1_000_000_000, 1_000_000_000))
    (root / "planner.yaml").write_text(CONFIG)
    return root


def _plan(root: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "planner", "plan", "-c", str(root / "planner.yaml"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_plan_counts_no_savings_for_rejected_requests(tmp_path: Path) -> None:
    alone = _plan(_workspace(tmp_path / "good", GOOD))
    mixed = _plan(_workspace(tmp_path / "mixed", GOOD + list(REJECTED.values())))
    assert mixed["totals"]["lanes"] == {"batch": 3, "rejected": 2}
    assert mixed["totals"]["reasons"]["no_provider"] == 1
    assert mixed["totals"]["reasons"]["too_large"] == 1
    # the money is that of the three requests that would be sent, to the last digit
    for money in ("interactive_usd", "batch_usd", "planned_usd", "savings_usd"):
        assert Decimal(mixed["totals"][money]) == Decimal(alone["totals"][money]), money
    gemini = next(m for m in mixed["models"] if m["model"] == "gemini-2.5-flash")
    assert Decimal(gemini["savings_usd"]) == 0 and Decimal(gemini["interactive_usd"]) == 0


def test_each_rejected_request_gets_one_dead_letter_line_and_no_savings(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    root = _workspace(tmp_path, GOOD + list(REJECTED.values()))
    sandbox = sandbox_factory()
    run_until_settled(root, sandbox, passes=2)
    run_until_settled(root, sandbox, passes=1)  # a later pass writes nothing again
    results, dead = read_sink(root / "results")
    assert set(results) == {line["id"] for line in GOOD}
    assert {key: [r["reason"] for r in records] for key, records in dead.items()} == {
        "no-provider": ["no_provider"],
        "too-large": ["too_large"],
    }
    for key, (record,) in dead.items():
        assert record["state"] == "rejected" and record["error"]["message"]
        assert record["model"] == REJECTED[key].get("model", "gpt-4o-mini")
    billed = {r["key"] for r in ledger_of(sandbox)["requests"]}
    assert billed == set(results)  # nothing rejected reached the provider
    spent = report(load_config(root / "planner.yaml"), None, datetime.now(tz=UTC))
    assert spent["totals"]["requests"] == len(GOOD)


def test_two_stores_writing_one_results_folder_keep_all_results(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    """Result file names are unique per store: two stores (or one made anew) with the same
    spool write one shared folder, and every line of both is kept (interactive deliveries were
    named from row ids, so the second store's files replaced the first's)."""
    shared = tmp_path / "shared-results"
    urgent = [{"id": f"now-{i}", "prompt": f"Answer {i} now.", "deadline": "1h"} for i in range(5)]
    sandbox = sandbox_factory()
    for name in ("first", "second"):
        root = _workspace(tmp_path / name, [*urgent, REJECTED["no-provider"]])
        config = (root / "planner.yaml").read_text().replace("path: results", f"path: {shared}")
        (root / "planner.yaml").write_text(config)
        run_until_settled(root, sandbox, passes=2)
    results, dead = read_sink(shared)
    assert {key: len(records) for key, records in results.items()} == {
        line["id"]: 2 for line in urgent
    }
    assert {key: len(records) for key, records in dead.items()} == {"no-provider": 2}
    assert all(r["lane"] == "interactive" for records in results.values() for r in records)

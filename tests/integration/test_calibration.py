"""Calibrated estimates against the sandbox, whose token rule differs from our estimator on
purpose (``planner/sandbox/usage.py``: ceil(1.3 x pieces) + 3 per message; ours for Gemini is
ceil(UTF-8 bytes / 4)). After one day of billed Gemini requests the next day's input estimates
are corrected per model, and `planner report` shows the error falling below 5%; requests that
name no maximum output get the p95 of what such requests of their source and model were billed.
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from planner.config import load_config
from planner.runtime.runner import run_once
from planner.runtime.store_commands import report
from planner.runtime.wiring import build_context, open_store
from planner.store.tables import REQUEST

CONFIG = """
state_dir: state
providers:
  gemini: {kind: gemini}
sources:
  spool: {kind: jsonl_dir, path: spool, settle: 0s, sink: out}
sinks:
  out: {kind: jsonl_dir, path: results}
policies:
  default: {batch_window: 24h, default_deadline: 48h, default_output_tokens: 256}
metrics: {enabled: false}
"""
WORDS = ("invoice", "chair", "table", "delivery", "customer", "summary", "refund", "order")


def _prompt(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))) + "."


def _drop(tmp_path: Path, name: str, day: int, n: int) -> None:
    rng = random.Random(day)
    with (tmp_path / "spool" / name).open("w") as f:
        for i in range(n):
            request: dict[str, Any] = {"contents": [{"parts": [{"text": _prompt(rng)}]}]}
            if i % 2:  # every other request names no maximum output
                request["generationConfig"] = {"maxOutputTokens": 64}
            line = {"key": f"d{day}-{i}", "model": "gemini-2.5-flash-lite", "request": request}
            f.write(json.dumps(line) + "\n")
    os.utime(tmp_path / "spool" / name, (1_000_000_000, 1_000_000_000))


def test_gemini_input_error_falls_below_5_percent_after_calibration(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    sandbox = sandbox_factory()
    (tmp_path / "spool").mkdir()
    (tmp_path / "planner.yaml").write_text(CONFIG)
    cfg = load_config(tmp_path / "planner.yaml")
    day1 = datetime(2026, 12, 1, 9, tzinfo=UTC)
    _drop(tmp_path, "day1.jsonl", 1, 60)
    run_once(build_context(cfg, sandbox_url=sandbox.url), now=lambda: day1)
    first = report(cfg, None, day1 + timedelta(hours=1))  # what day 1 billed, before
    [before] = [a for a in first["accuracy"] if a["model"] == "gemini-2.5-flash-lite"]
    assert before["requests"] == 60
    assert abs(float(before["input_error"])) > 0.05  # the raw rule misses by more than 5%
    assert before["input_error"] == before["raw_input_error"]

    day2 = day1 + timedelta(days=1)
    _drop(tmp_path, "day2.jsonl", 2, 60)
    run_once(build_context(cfg, sandbox_url=sandbox.url), now=lambda: day2)

    second = report(cfg, timedelta(hours=12), day2 + timedelta(hours=1))  # day 2 only
    [after] = [a for a in second["accuracy"] if a["model"] == "gemini-2.5-flash-lite"]
    assert after["requests"] == 60 and after["calibrated"] is True
    assert abs(float(after["input_error"])) < 0.05, after
    assert abs(float(after["raw_input_error"])) > 0.05  # the estimator itself did not change

    # requests without a maximum output: day 1 assumed the policy's 256; day 2 the p95 of
    # what day 1's such requests were billed
    with open_store(cfg)() as session:
        rows = session.execute(
            select(
                REQUEST.c.key,
                REQUEST.c.est_output_tokens,
                REQUEST.c.usage_output_tokens,
                REQUEST.c.output_max_given,
            )
        ).all()
    day1_free = sorted(
        r.usage_output_tokens for r in rows if r.key.startswith("d1-") and not r.output_max_given
    )
    p95 = day1_free[-(-95 * len(day1_free) // 100) - 1]
    assert {
        r.est_output_tokens for r in rows if r.key.startswith("d1-") and not r.output_max_given
    } == {256}
    assert {
        r.est_output_tokens for r in rows if r.key.startswith("d2-") and not r.output_max_given
    } == {p95}
    assert {r.est_output_tokens for r in rows if r.output_max_given} == {64}

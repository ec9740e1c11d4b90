"""The HTTP intake's source is wired like a configured source: its policy decides its requests
and judges its flush deadlines, and its results go to its own sink (plus ``intake.sink``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from planner.config import load_config
from planner.runtime.intake.sink import IntakeSink
from planner.runtime.wiring import build_sinks, flush_rules, open_store

CONFIG = """
state_dir: state
policies:
  default: {}
  fast: {batch_window: 1h, default_deadline: 3h}
sinks:
  out: {kind: jsonl_dir, path: results}
intake: {enabled: true, tokens_env: T, source: api, policy: fast, sink: out}
"""


def test_the_intake_source_has_its_policy_and_sinks(tmp_path: Path) -> None:
    (tmp_path / "planner.yaml").write_text(CONFIG)
    cfg = load_config(tmp_path / "planner.yaml")
    rules = flush_rules(cfg).by_source["api"]
    assert (rules.batch_window, rules.default_deadline) == (timedelta(hours=1), timedelta(hours=3))
    sinks = build_sinks(cfg, None, open_store(cfg))("api")
    assert [type(s).__name__ for s in sinks] == ["IntakeSink", "JsonlDirSink"]
    assert isinstance(sinks[0], IntakeSink) and sinks[0].name == "api"

"""A batch the provider reports running is recorded as running, then collected.

Found by the random-kill suite: a batch still ``submitted`` in the store that the provider
reported ``running`` was moved with ``expected=(submitted, running)``, and naming
``running -> running`` as an expected transition is refused, so every poll of a running
batch aborted the whole pass. The kill suite only saw it when the sandbox was slow; here a
manual sandbox clock makes it certain: after one state's worth of time every batch is running.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from planner.config import load_config
from planner.runtime.runner import run_once
from planner.runtime.wiring import build_context
from planner.sandbox import RunningSandbox, serve
from planner.store.tables import BATCH

SECONDS_PER_STATE = 10.0

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
  gemini: {kind: gemini}
sources:
  spool: {kind: jsonl_dir, path: spool, settle: 0s, sink: out}
sinks:
  out: {kind: jsonl_dir, path: results}
policies:
  default: {batch_window: 24h, default_deadline: 48h}
metrics: {enabled: false}
"""


@pytest.fixture()
def sandbox() -> Iterator[RunningSandbox]:
    running = serve(speed=SECONDS_PER_STATE, manual_clock=True)
    try:
        yield running
    finally:
        running.stop()


def _lines() -> list[str]:
    chat = [
        {
            "custom_id": f"chat-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]},
        }
        for i in range(3)
    ]
    gemini = [
        {
            "key": f"gen-{i}",
            "model": "gemini-2.5-flash",
            "request": {"contents": [{"parts": [{"text": f"q{i}"}]}]},
        }
        for i in range(3)
    ]
    return [json.dumps(line) for line in chat + gemini]


def _batch_states(session_factory: Callable[[], Session]) -> list[str]:
    with session_factory() as session:
        return sorted(session.execute(select(BATCH.c.state)).scalars())


def test_a_running_batch_is_recorded_running_then_collected(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "work.jsonl").write_text("\n".join(_lines()) + "\n")
    (tmp_path / "planner.yaml").write_text(CONFIG)
    cfg = load_config(tmp_path / "planner.yaml")
    ctx = build_context(cfg, sandbox_url=sandbox.url)

    run_once(ctx)  # submitted; the frozen sandbox clock keeps them pending
    assert _batch_states(ctx.session_factory) == ["submitted", "submitted"]

    sandbox.state.clock.advance(SECONDS_PER_STATE * 1.5)  # every job is running now
    run_once(ctx)
    assert _batch_states(ctx.session_factory) == ["running", "running"]

    sandbox.state.clock.advance(SECONDS_PER_STATE * 10)  # and finished
    run_once(ctx)
    assert _batch_states(ctx.session_factory) == ["collected", "collected"]
    results = [
        json.loads(line)["id"]
        for path in (tmp_path / "results").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert sorted(results) == sorted(
        [f"chat-{i}" for i in range(3)] + [f"gen-{i}" for i in range(3)]
    )

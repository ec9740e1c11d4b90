"""Admission against a provider's open-job limit through the plan stage and a real store: the
limit is reserved when a batch is planned and released when the provider finishes it; the
configured figure overrides the documented one."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update

from planner.config import load_config
from planner.core.admission import AccountLimits
from planner.pipeline.intake import ingest_all
from planner.pipeline.plan_stage import run_plan_stage
from planner.runtime.wiring import account_limits_for, build_context
from planner.store.tables import BATCH, REQUEST

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
  gemini: {kind: gemini}
sources:
  spool: {kind: jsonl_dir, path: spool, settle: 0s, default_model: gpt-4o-mini}
limits:
  openai: {max_requests: 1, max_concurrent_batches: 2}
  gemini: {max_file_storage: 1GB}
metrics: {enabled: false}
"""


def test_open_jobs_are_capped_and_freed_when_a_batch_finishes(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    with (tmp_path / "spool" / "work.jsonl").open("w") as f:
        for i in range(5):
            f.write(json.dumps({"id": f"r{i}", "prompt": f"Say {i}.", "max_output_tokens": 5}))
            f.write("\n")
    os.utime(tmp_path / "spool" / "work.jsonl", (1_000_000_000, 1_000_000_000))
    (tmp_path / "planner.yaml").write_text(CONFIG)
    cfg = load_config(tmp_path / "planner.yaml")
    accounts = account_limits_for(cfg)
    assert accounts("openai") == AccountLimits(2, None)  # configured (OpenAI documents none)
    assert accounts("gemini") == AccountLimits(100, 1_000_000_000)  # documented jobs, our bytes
    ctx = build_context(cfg, sandbox_url="http://127.0.0.1:9")  # no provider is called
    now = datetime(2026, 12, 6, 9, tzinfo=UTC)
    ingest_all(ctx.sources, ctx.session_factory, now)

    def states() -> dict[str, int]:
        with ctx.session_factory() as session:
            found: dict[str, int] = {}
            for (state,) in session.execute(select(REQUEST.c.state)):
                found[state] = found.get(state, 0) + 1
            return found

    first = run_plan_stage(ctx.planner, ctx.session_factory, now, chunk=100)
    # one request per batch, two jobs at once: two planned, three wait in the queue
    assert (first.batches, first.deferred) == (2, 3)
    assert states() == {"planned": 2, "queued": 3}
    again = run_plan_stage(ctx.planner, ctx.session_factory, now, chunk=100)
    assert again.batches == 0 and states() == {"planned": 2, "queued": 3}
    with ctx.session_factory() as session, session.begin():  # the provider finished one
        one = session.execute(select(BATCH.c.id).limit(1)).scalar_one()
        session.execute(update(BATCH).where(BATCH.c.id == one).values(state="succeeded"))
    third = run_plan_stage(ctx.planner, ctx.session_factory, now, chunk=100)
    assert third.batches == 1 and states() == {"planned": 3, "queued": 2}

"""Deadlines from experience, against the sandbox and a real store.

- the escape loop of issue 13: with ``batch_window: 10m`` a request due in 20 minutes was batched,
  cancelled by the deadline escape and batched again at every pass, taking a 40-hour request in
  the same batch down with it each time. Now the window needs one retry on top (27 min), so the
  urgent request goes interactive at once, and the 40-hour one rides alone;
- the turnaround learned from 20 finished batches replaces the configured window;
- batches are packed by deadline band: a short-slack request never shares a batch with a
  long-slack one;
- a request whose batch was cancelled for its deadline is never batched again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

from planner.config import load_config
from planner.pipeline.context import StageContext
from planner.pipeline.intake import ingest_all
from planner.pipeline.plan_stage import run_plan_stage
from planner.runtime import clock as wall
from planner.runtime.runner import run_once
from planner.runtime.store_commands import report
from planner.runtime.wiring import build_context
from planner.store import batches as store_batches
from planner.store import budgets as store_budgets
from planner.store.tables import BATCH, REQUEST

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
sources:
  spool: {kind: jsonl_dir, path: spool, settle: 0s, sink: out, default_model: gpt-4o-mini}
sinks:
  out: {kind: jsonl_dir, path: results}
policies:
  default: {batch_window: WINDOW, default_deadline: 48h}
metrics: {enabled: false}
"""


def _workspace(tmp_path: Path, lines: list[dict[str, Any]], window: str) -> Path:
    (tmp_path / "spool").mkdir()
    body = "".join(json.dumps(line) + "\n" for line in lines)
    (tmp_path / "spool" / "work.jsonl").write_text(body)
    os.utime(tmp_path / "spool" / "work.jsonl", (1_000_000_000, 1_000_000_000))
    (tmp_path / "planner.yaml").write_text(CONFIG.replace("WINDOW", window))
    return tmp_path


def _line(key: str, deadline: str) -> dict[str, Any]:
    return {"id": key, "prompt": f"Answer {key}.", "max_output_tokens": 20, "deadline": deadline}


def _rows(ctx: StageContext) -> dict[str, Any]:
    with ctx.session_factory() as session:
        rows = session.execute(
            select(REQUEST.c.key, REQUEST.c.state, REQUEST.c.decision, REQUEST.c.batch_id)
        ).all()
    return {row.key: row for row in rows}


def test_a_request_due_in_20_minutes_is_never_batched_with_a_10m_window(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    sandbox = sandbox_factory(faults="stuck=1")  # a batch would stay pending forever
    lines = [_line("soon", "20m"), _line("later", "40h")]
    ctx = build_context(
        load_config(_workspace(tmp_path, lines, "10m").joinpath("planner.yaml")),
        sandbox_url=sandbox.url,
    )
    t0 = wall.utc_now()
    for minutes in (0, 5, 10):  # three passes, as the daemon would run them
        run_once(ctx, lambda m=minutes: t0 + timedelta(minutes=m))
    rows = _rows(ctx)
    # 20 min < 10 min window + 27 min retry: interactive at once, with the rule that said so
    assert (rows["soon"].state, rows["soon"].decision) == ("succeeded", "deadline_too_close")
    assert rows["later"].state == "submitted"
    assert rows["later"].decision == "deadline_allows_batch"
    ledger = httpx.get(sandbox.url + "/_sandbox/ledger").json()
    ours = [b for b in ledger["batches"] if b["our_id"]]
    # one batch, created once, holding the 40-hour request alone, never cancelled
    assert [b["requests"] for b in ours] == [1]
    assert all(b["state"] != "cancelled" for b in ours)
    billed = {r["key"]: r for r in ledger["requests"]}
    assert sum(r["times_billed"] for r in billed.values()) == 1  # "soon", interactively, once
    with ctx.session_factory() as session:
        cancels = session.execute(
            select(BATCH.c.id).where(BATCH.c.cancel_requested_at.is_not(None))
        ).all()
    assert cancels == []


def _plan(ctx: StageContext, now: datetime) -> dict[str, Any]:
    ingest_all(ctx.sources, ctx.session_factory, now)
    run_plan_stage(ctx.planner, ctx.session_factory, now, chunk=100)
    return _rows(ctx)


def _finished_batches(ctx: StageContext, n: int, took: timedelta, now: datetime) -> None:
    with ctx.session_factory() as session, session.begin():
        for i in range(n):
            start = now - timedelta(days=2) + timedelta(minutes=i)
            session.execute(
                insert(BATCH).values(
                    id=f"plb_old{i:03d}",
                    provider="openai",
                    model="gpt-4o-mini",
                    endpoint="/v1/chat/completions",
                    state="collected",
                    request_count=1,
                    bytes=100,
                    est_input_tokens=10,
                    attempt=1,
                    version=0,
                    created_at=start,
                    submitted_at=start,
                    finished_at=start + took,
                    updated_at=start + took,
                )
            )


def test_the_learned_turnaround_replaces_the_window_after_20_batches(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, [_line("six-hours", "6h")], "24h")
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url="http://127.0.0.1:9")
    now = datetime(2026, 12, 6, 9, tzinfo=UTC)
    # 20 batches that took 2 h: p95 2 h + 27 min retry < 6 h -> batch
    _finished_batches(ctx, 20, timedelta(hours=2), now)
    with ctx.session_factory() as session:
        assert len(store_batches.turnarounds(session)[("openai", "gpt-4o-mini")]) == 20
    rows = _plan(ctx, now)
    assert (rows["six-hours"].state, rows["six-hours"].decision) == (
        "planned",
        "deadline_allows_batch",
    )
    shown = report(load_config(workspace / "planner.yaml"), None, now)
    assert shown["turnaround"] == [
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "batches": 20,
            "p50_seconds": 7200.0,
            "p95_seconds": 7200.0,
            "learned": True,
            "learned_after": 20,
        }
    ]


def test_with_19_batches_the_configured_window_still_rules(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, [_line("six-hours", "6h")], "24h")
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url="http://127.0.0.1:9")
    now = datetime(2026, 12, 6, 9, tzinfo=UTC)
    _finished_batches(ctx, 19, timedelta(hours=2), now)
    rows = _plan(ctx, now)
    assert (rows["six-hours"].state, rows["six-hours"].decision) == (
        "interactive",
        "deadline_too_close",
    )


def test_short_and_long_slack_requests_never_share_a_batch(tmp_path: Path) -> None:
    lines = [_line("a-30h", "30h"), _line("b-200h", "200h"), _line("c-31h", "31h")]
    workspace = _workspace(tmp_path, lines, "24h")
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url="http://127.0.0.1:9")
    rows = _plan(ctx, datetime(2026, 12, 6, 9, tzinfo=UTC))
    assert {r.state for r in rows.values()} == {"planned"}
    # 30 h and 31 h share the one-window band; 200 h rides alone
    assert rows["a-30h"].batch_id == rows["c-31h"].batch_id != rows["b-200h"].batch_id


def test_a_request_that_escaped_a_batch_is_never_batched_again(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, [_line("escaped", "200h"), _line("fresh", "200h")], "24h")
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url="http://127.0.0.1:9")
    now = datetime(2026, 12, 6, 9, tzinfo=UTC)
    ingest_all(ctx.sources, ctx.session_factory, now)
    with ctx.session_factory() as session, session.begin():
        [escaped_id] = session.execute(
            select(REQUEST.c.id).where(REQUEST.c.key == "escaped")
        ).scalars()
        # what collect writes for the lines of a batch cancelled by the deadline escape
        store_budgets.mark_decisions(session, [escaped_id], "batch_escaped", now)
    run_plan_stage(ctx.planner, ctx.session_factory, now, chunk=100)
    rows = _rows(ctx)
    assert (rows["escaped"].state, rows["escaped"].decision) == ("interactive", "batch_escaped")
    assert (rows["fresh"].state, rows["fresh"].decision) == ("planned", "deadline_allows_batch")


_PLANNED = ("six-hours", "twelve-hours")


def _billed_requests(ctx: StageContext, n: int, raw: int, billed: int, now: datetime) -> None:
    """``n`` finished requests of gpt-4o-mini whose raw estimate was ``raw`` input tokens and
    whose bill said ``billed``: calibration samples."""
    with ctx.session_factory() as session, session.begin():
        for i in range(n):
            at = now - timedelta(days=1) + timedelta(minutes=i)
            session.execute(
                insert(REQUEST).values(
                    id=100_000 + i,
                    source="spool",
                    key=f"billed-{i}",
                    model="gpt-4o-mini",
                    endpoint="/v1/chat/completions",
                    metadata_json="{}",
                    origin="test",
                    state="succeeded",
                    attempts=1,
                    claims=0,
                    received_at=at,
                    updated_at=at,
                    est_raw_input_tokens=raw,
                    usage_input_tokens=billed,
                )
            )


def test_plan_decides_and_estimates_as_the_planning_stage_on_the_same_store(
    tmp_path: Path,
) -> None:
    # prior window 1 h: both would go by batch; 20 batches that took 8 h make the learned p95
    # 8 h, so the 6-hour request no longer fits (8 h + 27 min retry) and the 12-hour one does
    lines = [_line("six-hours", "6h"), _line("twelve-hours", "12h")]
    workspace = _workspace(tmp_path, lines, "1h")
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url="http://127.0.0.1:9")
    now = wall.utc_now()
    _finished_batches(ctx, 20, timedelta(hours=8), now)
    _billed_requests(ctx, 20, raw=10, billed=30, now=now)  # we estimate a third of the bill

    done = subprocess.run(
        [sys.executable, "-m", "planner", "plan", "-c", str(workspace / "planner.yaml"), "--json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)["models"]
    with ctx.session_factory() as session:  # the dry run recorded nothing
        assert session.execute(select(REQUEST.c.id).where(REQUEST.c.key.in_(_PLANNED))).all() == []

    rows = _plan(ctx, now)  # the real planning stage, on the same store and spool
    assert (rows["six-hours"].state, rows["six-hours"].decision) == (
        "interactive",
        "deadline_too_close",
    )
    assert (rows["twelve-hours"].state, rows["twelve-hours"].decision) == (
        "planned",
        "deadline_allows_batch",
    )
    assert row["lanes"] == {"batch": 1, "interactive": 1}
    assert row["reasons"] == {"deadline_allows_batch": 1, "deadline_too_close": 1}
    with ctx.session_factory() as session:
        stored = session.execute(
            select(REQUEST.c.est_input_tokens, REQUEST.c.est_raw_input_tokens).where(
                REQUEST.c.key.in_(_PLANNED)
            )
        ).all()
    assert row["input_tokens"] == sum(s.est_input_tokens for s in stored)
    assert row["input_tokens"] == sum(3 * s.est_raw_input_tokens for s in stored)  # calibrated
    [method] = row["estimate_methods"]
    assert method.endswith("+calibrated")

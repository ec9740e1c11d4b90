"""An unconfirmed create meets a lagging batch list: the batch is adopted, never sent twice.

The sandbox carries out the first OpenAI ``batches.create`` and cuts the connection before
answering (fault ``drop``), and shows a new batch in listings only 30 s (its clock) after
creation (fault ``list_lag``). A listing right after the lost answer misses the batch; planner
must not conclude "not created" from that one miss (reliability spec §2, list lag) but list
again ``schedule.list_lag`` later, find it and adopt it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from planner.config import load_config
from planner.metrics import Metrics
from planner.pipeline.context import StageContext
from planner.pipeline.intake import ingest_all
from planner.pipeline.plan_stage import run_plan_stage
from planner.pipeline.submit import run_submit_stage
from planner.providers import openai_wire
from planner.runtime import clock as wall
from planner.runtime.observer import MetricsObserver
from planner.runtime.runner import run_once
from planner.runtime.wiring import SANDBOX_KEY, build_context
from planner.sandbox import RunningSandbox, serve
from planner.store.tables import BATCH, REQUEST

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
sources:
  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, sink: out}
sinks:
  out: {kind: jsonl_dir, path: results}
metrics: {enabled: false}
"""
KEYS = [f"lag-{i}" for i in range(5)]


@pytest.fixture()
def sandbox() -> Iterator[RunningSandbox]:
    faults = "drop=0,drop_first=1,drop_on=openai.create,list_lag=30"
    with serve(speed=0.0, manual_clock=True, faults=faults) as running:
        yield running


def _context(tmp_path: Path, sandbox: RunningSandbox) -> StageContext:
    (tmp_path / "spool").mkdir()
    lines = "".join(json.dumps({"id": k, "prompt": f"say {k}"}) + "\n" for k in KEYS)
    (tmp_path / "spool" / "work.jsonl").write_text(lines)
    (tmp_path / "planner.yaml").write_text(CONFIG)
    return build_context(load_config(tmp_path / "planner.yaml"), sandbox_url=sandbox.url)


def _remote_batches(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    ledger = httpx.get(sandbox.url + "/_sandbox/ledger", timeout=30).json()
    return [b for b in ledger["batches"] if b["our_id"]]


def _store_batch(ctx: StageContext) -> tuple[str, str | None]:
    with ctx.session_factory() as session:
        row = session.execute(select(BATCH.c.state, BATCH.c.remote_id)).one()
    return row.state, row.remote_id


def test_a_lost_create_answer_is_adopted_after_the_list_lag_not_sent_again(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    ctx = _context(tmp_path, sandbox)
    assert ctx.list_lag == timedelta(seconds=60)  # the default
    t0 = wall.utc_now()
    ingest_all(ctx.sources, ctx.session_factory, t0)
    run_plan_stage(ctx.planner, ctx.session_factory, t0, ctx.plan_chunk)

    first = run_submit_stage(ctx, t0, all_due=True)
    assert first.deferred and not first.submitted  # the answer was lost...
    assert len(_remote_batches(sandbox)) == 1  # ...but the batch exists at the provider
    assert _store_batch(ctx) == ("uploading", None)

    # listings within the lag miss it: wait, never re-send
    for seconds in (1, 30, 59):
        passed = run_submit_stage(ctx, t0 + timedelta(seconds=seconds), all_due=True)
        assert passed.deferred and not (passed.submitted or passed.adopted), seconds
        assert len(_remote_batches(sandbox)) == 1, f"sent again {seconds} s after"
    assert _store_batch(ctx) == ("uploading", None)

    sandbox.state.clock.advance(31)  # the provider's list now shows it
    adopted = run_submit_stage(ctx, t0 + timedelta(seconds=61), all_due=True)
    assert len(adopted.adopted) == 1 and not adopted.submitted
    remote = _remote_batches(sandbox)
    assert len(remote) == 1
    state, remote_id = _store_batch(ctx)
    assert state in ("submitted", "running") and remote_id == remote[0]["name"]

    for _ in range(5):  # and it finishes, each request billed once
        run_once(ctx)
        with ctx.session_factory() as session:
            states = set(session.execute(select(REQUEST.c.state)).scalars())
        if states == {"succeeded"}:
            break
    assert states == {"succeeded"}
    ledger = httpx.get(sandbox.url + "/_sandbox/ledger", timeout=30).json()
    billed = {r["key"]: r["times_billed"] for r in ledger["requests"]}
    assert {k: billed.get(k) for k in KEYS} == dict.fromkeys(KEYS, 1)
    assert len(_remote_batches(sandbox)) == 1


def test_a_batch_found_twice_at_adoption_is_counted_as_a_duplicate(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """Two creates of one intent both went through (here: the lost one, and one made by hand
    with the same id): the lookup finds it twice, logs it, adopts one and the metric behind
    PlannerDuplicateBatch counts it."""
    ctx = _context(tmp_path, sandbox)
    t0 = wall.utc_now()
    ingest_all(ctx.sources, ctx.session_factory, t0)
    run_plan_stage(ctx.planner, ctx.session_factory, t0, ctx.plan_chunk)
    assert run_submit_stage(ctx, t0, all_due=True).deferred  # the create's answer was lost
    with ctx.session_factory() as session:
        batch_id = session.execute(select(BATCH.c.id)).scalar_one()
    client = openai.OpenAI(api_key=SANDBOX_KEY, base_url=sandbox.url + "/v1", max_retries=0)
    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {}}
    upload = client.files.create(file=("x.jsonl", json.dumps(line).encode()), purpose="batch")
    client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata=openai_wire.batch_metadata(batch_id),
    )
    sandbox.state.clock.advance(31)

    observer = MetricsObserver(Metrics(CollectorRegistry(), process_metrics=False))
    result = run_submit_stage(ctx, t0 + timedelta(seconds=61), all_due=True)
    observer.submitted(ctx, result)
    assert [b.id for b in result.duplicates] == [batch_id] and result.adopted == [batch_id]
    duplicates = observer.metrics.registry.get_sample_value(
        "planner_duplicate_batches_total", {"provider": "openai"}
    )
    assert duplicates == 1

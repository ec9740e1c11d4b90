"""Housekeeping against the real sandbox, through the unmodified SDKs: orphan uploads go, the
input files of batches still in flight stay (reliability spec, invariant I4).

- An upload left by an unconfirmed create (a 500 on create: maybe created, so the batch waits
  in ``uploading`` and, not found at the provider, is uploaded again under the same id) is
  still at the provider after its batch is collected; housekeeping deletes it.
- With every job stuck at the provider, orphan uploads named like ours (made directly with the
  SDKs) are kept while young and deleted once old, while the input files of the running
  batches, an operator's own files and the file of a batch another replica is running survive.
- The daemon runs one ingest job per source, at that source's own interval.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from google import genai
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from planner.config import load_config
from planner.core.orphans import batch_id_from_file_name
from planner.core.states import BatchState
from planner.errors import Transient
from planner.metrics import Metrics
from planner.pipeline.context import StageContext
from planner.pipeline.housekeeping import HousekeepingResult, run_housekeeping_stage
from planner.runtime import clock, passes, wiring
from planner.runtime.daemon import HOUSEKEEPING, Daemon
from planner.runtime.lifecycle import Lifecycle
from planner.runtime.runner import run_once
from planner.runtime.wiring import build_context
from planner.sandbox import RunningSandbox, serve
from planner.sandbox.faults import FaultPlan
from planner.store import batches as store_batches
from planner.store import requests as store_requests
from planner.store.batches import new_batch_id
from planner.store.tables import REQUEST

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
  gemini: {kind: gemini}
sources:
  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, sink: out}
sinks:
  out: {kind: jsonl_dir, path: results}
policies:
  default: {batch_window: 24h, default_deadline: 48h}
"""

CHAT_LINE: dict[str, Any] = {
    "custom_id": "x",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
}
LATER = timedelta(hours=2)  # past the orphan age guard (1 h)


def _lines() -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = [{**CHAT_LINE, "custom_id": f"chat-{i}"} for i in range(4)]
    lines += [  # a large expected output: sent as a JSONL file, not inline
        {
            "key": f"gen-file-{i}",
            "model": "gemini-2.5-flash-lite",
            "request": {
                "contents": [{"parts": [{"text": f"Write chapter {i}"}]}],
                "generationConfig": {"maxOutputTokens": 65536},
            },
        }
        for i in range(40)
    ]
    return lines


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "work.jsonl").write_text("".join(json.dumps(line) + "\n" for line in _lines()))
    (tmp_path / "planner.yaml").write_text(CONFIG)
    return tmp_path


@pytest.fixture()
def sandboxes() -> Iterator[list[RunningSandbox]]:
    running: list[RunningSandbox] = []
    yield running
    for sandbox in running:
        sandbox.stop()


def _context(workspace: Path, sandbox: RunningSandbox) -> StageContext:
    return build_context(load_config(workspace / "planner.yaml"), sandbox_url=sandbox.url)


def files_of_ours(sandbox: RunningSandbox) -> dict[str, str]:
    """``{file name at the provider: batch id}`` for every uploaded file named like ours."""
    found: dict[str, str] = {}
    for stored in list(sandbox.state.files.values()):
        name = stored.display_name if stored.surface == "gemini" else stored.filename
        batch_id = batch_id_from_file_name(name)
        if batch_id is not None and not stored.generated:
            found[f"{stored.surface}:{stored.id}"] = batch_id
    return found


def openai_output_files(sandbox: RunningSandbox) -> list[str]:
    return [f.id for f in sandbox.state.files.values() if f.surface == "openai" and f.generated]


LIST_LAG = timedelta(seconds=61)


def _clients(sandbox: RunningSandbox) -> tuple[openai.OpenAI, genai.Client]:
    return (
        openai.OpenAI(api_key=wiring.SANDBOX_KEY, base_url=sandbox.url + "/v1", max_retries=0),
        genai.Client(
            api_key=wiring.SANDBOX_KEY,
            http_options={"base_url": sandbox.url, "api_version": "v1beta"},
        ),
    )


def _upload_openai(client: openai.OpenAI, filename: str) -> str:
    data = json.dumps(CHAT_LINE).encode() + b"\n"
    return client.files.create(file=(filename, data, "application/jsonl"), purpose="batch").id


def _upload_gemini(client: genai.Client, display_name: str) -> str:
    data = json.dumps({"key": "x", "request": {"contents": [{"parts": [{"text": "hi"}]}]}})
    uploaded = client.files.upload(
        file=io.BytesIO(data.encode() + b"\n"),
        config={"mime_type": "jsonl", "display_name": display_name},
    )
    assert uploaded.name
    return uploaded.name


def test_an_upload_left_by_an_unconfirmed_create_is_deleted_once_its_batch_is_collected(
    workspace: Path, sandboxes: list[RunningSandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first create on each surface answers 500: maybe created, so the batch is looked up,
    # not found, and uploaded and created again under the same id
    sandbox = serve(speed=0.0, faults="server_error=0,server_error_first=2,server_error_on=create")
    sandboxes.append(sandbox)
    skipped = HousekeepingResult()
    monkeypatch.setattr(passes, "run_housekeeping_stage", lambda ctx, now: skipped)
    t0 = clock.utc_now()
    for i in range(3):  # a list lag (schedule.list_lag, 60 s) apart: the second listing may resend
        run_once(_context(workspace, sandbox), now=lambda i=i: t0 + LIST_LAG * i)
    ctx = _context(workspace, sandbox)
    with ctx.session_factory() as session:
        states = {k: n for k, n in store_batches.counts_by_state(session).items() if n}
    assert states == {BatchState.COLLECTED.value: 2}, states  # one openai, one gemini file batch

    left = files_of_ours(sandbox)
    assert len(left) == 2, left  # the first upload of each batch, which collect knows nothing of
    assert not openai_output_files(sandbox)  # collect deleted the recorded files

    result = run_housekeeping_stage(ctx, clock.utc_now())  # finished batch: no age to wait
    assert len(result.files_deleted) == 2 and not result.errors
    assert files_of_ours(sandbox) == {}  # I4: no input or output file of ours is left
    assert run_housekeeping_stage(ctx, clock.utc_now() + LATER).files_deleted == []


def test_orphans_go_and_the_inputs_of_running_batches_stay(
    workspace: Path, sandboxes: list[RunningSandbox]
) -> None:
    sandbox = serve(speed=0.0, faults="stuck=1")  # every job stays pending at the provider
    sandboxes.append(sandbox)
    ctx = _context(workspace, sandbox)
    summary = run_once(ctx)
    assert summary.stages["submit"]["submitted"] == 2
    with ctx.session_factory() as session:
        active = store_batches.batches_in(session, (BatchState.SUBMITTED, BatchState.RUNNING))
    assert len(active) == 2 and all(b.input_file_id for b in active)
    inputs = dict(files_of_ours(sandbox))
    assert sorted(inputs.values()) == sorted(b.id for b in active)

    oai, gem = _clients(sandbox)
    orphan_openai = new_batch_id()
    orphan_gemini = new_batch_id()
    _upload_openai(oai, f"planner-{orphan_openai}.jsonl")  # a crash after upload
    _upload_gemini(gem, f"planner-{orphan_gemini}")
    _upload_openai(oai, "planner-notes.jsonl")  # an operator's files, not ours
    _upload_gemini(gem, "my-dataset")
    # another replica's batch, unknown to this store, still running at the provider
    replica = new_batch_id()
    replica_file = _upload_openai(oai, f"planner-{replica}.jsonl")
    oai.batches.create(
        input_file_id=replica_file,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"planner_batch_id": replica},
    )
    # a second upload for a batch that is running: kept while its batch runs
    running = active[0]
    if running.provider == "openai":
        _upload_openai(oai, f"planner-{running.id}.jsonl")
    else:
        _upload_gemini(gem, f"planner-{running.id}")
    before = files_of_ours(sandbox)
    assert len(before) == len(inputs) + 4

    young = run_housekeeping_stage(ctx, clock.utc_now())
    assert young.files_deleted == [] and not young.errors
    assert young.files_kept == {"keep_young": 3, "keep_active": 3}
    assert files_of_ours(sandbox) == before

    old = run_housekeeping_stage(ctx, clock.utc_now() + LATER)
    assert not old.errors
    assert old.deleted_by_provider == {"openai": 1, "gemini": 1}
    assert old.files_kept == {"keep_remote_active": 1, "keep_active": 3}
    after = files_of_ours(sandbox)
    assert sorted(set(before.values()) - set(after.values())) == sorted(
        [orphan_openai, orphan_gemini]
    )
    assert set(inputs) <= set(after)  # the running batches' inputs are all there
    names: set[str | None] = {f.filename for f in sandbox.state.files.values()}
    names |= {f.display_name for f in sandbox.state.files.values()}
    assert {"planner-notes.jsonl", "my-dataset"} <= names


def test_the_daemon_ingests_each_source_at_its_own_interval(
    tmp_path: Path, sandboxes: list[RunningSandbox]
) -> None:
    sandbox = serve(speed=0.0)
    sandboxes.append(sandbox)
    for name in ("fast", "slow"):
        (tmp_path / name).mkdir()
        line = {**CHAT_LINE, "custom_id": f"{name}-1"}
        (tmp_path / name / "a.jsonl").write_text(json.dumps(line) + "\n")
    (tmp_path / "planner.yaml").write_text(
        CONFIG.replace(
            "  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, "
            "sink: out}",
            "  fast: {kind: jsonl_dir, path: fast, settle: 0s, interval: 10s}\n"
            "  slow: {kind: jsonl_dir, path: slow, settle: 0s, interval: 2m}",
        )
    )
    cfg = load_config(tmp_path / "planner.yaml")
    ctx = build_context(cfg, sandbox_url=sandbox.url)
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    scheduler = BackgroundScheduler()
    daemon = Daemon(
        tmp_path / "planner.yaml", sandbox.url, Lifecycle(), cfg, ctx, metrics, scheduler
    )
    daemon.schedule()
    jobs = {job.id: job for job in scheduler.get_jobs()}
    intervals = {
        name: job.trigger.interval
        for name, job in jobs.items()
        if isinstance(job.trigger, IntervalTrigger)
    }
    assert intervals["ingest:fast"] == timedelta(seconds=10)
    assert intervals["ingest:slow"] == timedelta(minutes=2)
    assert intervals["housekeeping"] == HOUSEKEEPING
    assert "ingest" not in jobs

    jobs["ingest:fast"].func()  # one tick of the fast source reads only its own folder
    with ctx.session_factory() as session:
        query = select(REQUEST.c.source, func.count()).group_by(REQUEST.c.source)
        sources = {source: n for source, n in session.execute(query)}
    assert sources == {"fast": 1}


def test_a_failing_listing_or_an_open_circuit_delays_only_the_file_sweep(
    workspace: Path, sandboxes: list[RunningSandbox]
) -> None:
    sandbox = serve(speed=0.0)
    sandboxes.append(sandbox)
    ctx = replace(_context(workspace, sandbox), retention=timedelta(days=30))
    run_once(ctx)
    with ctx.session_factory() as session:
        done = {k: n for k, n in store_requests.counts_by_state(session).items() if n}
        collected = store_batches.counts_by_state(session)[BatchState.COLLECTED.value]
    assert done == {"succeeded": len(_lines())}
    orphan = new_batch_id()
    _upload_openai(_clients(sandbox)[0], f"planner-{orphan}.jsonl")

    sandbox.state.faults = FaultPlan.from_spec("server_error=1,server_error_on=file_list")
    month = clock.utc_now() + timedelta(days=31)
    result = run_housekeeping_stage(ctx, month)
    assert sorted(result.errors) == ["gemini", "openai"]
    assert orphan in files_of_ours(sandbox).values()  # still there, for the next pass
    # retention ran all the same: every request compacted, every batch forgotten
    assert (result.requests_compacted, result.batches_deleted) == (len(_lines()), collected)
    with ctx.session_factory() as session:
        assert store_batches.counts_by_state(session)[BatchState.COLLECTED.value] == 0
        assert store_requests.counts_by_state(session)["succeeded"] == len(_lines())

    sandbox.state.faults = FaultPlan.from_spec(None)
    for _ in range(5):  # five failures in a row open OpenAI's circuit
        ctx.guard.record("openai", month, Transient("connection reset"))
    assert not ctx.guard.allows("openai")
    skipped = run_housekeeping_stage(ctx, month)
    assert skipped.errors == [] and orphan in files_of_ours(sandbox).values()

    ctx.guard.record("openai", month)  # it answers again: closed
    assert run_housekeeping_stage(ctx, month).files_deleted != []
    assert orphan not in files_of_ours(sandbox).values()

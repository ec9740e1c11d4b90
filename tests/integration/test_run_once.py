"""End to end: spool -> store -> providers (the real SDKs) -> sandbox -> results on disk.

Every request in the spool must end with exactly one result line or one dead-letter line; the
usage we recorded must equal what the sandbox billed, and the actual cost must equal the
catalog price x billed tokens. With per-line errors and a 429 storm, repeated passes still
account for every request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from planner.config import load_config
from planner.providers import LazyProviders
from planner.runtime.runner import run_once
from planner.runtime.wiring import build_context
from planner.sandbox import RunningSandbox
from planner.sandbox.faults import FaultPlan
from planner.store.tables import BATCH, LEDGER, REQUEST
from planner.tokenizers import TiktokenCounter
from tests.conftest import REPO

PRICES = yaml.safe_load((REPO / "planner" / "data" / "prices.yaml").read_text())["models"]
MILLION = Decimal(1_000_000)


def _chat(i: int) -> dict[str, Any]:
    return {
        "custom_id": f"chat-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Summarise ticket {i} in one line."}],
            "max_tokens": 60,
        },
    }


def spool_lines() -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = [_chat(i) for i in range(12)]
    lines += [
        {
            "custom_id": f"emb-{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": f"document {i}"},
        }
        for i in range(5)
    ]
    lines += [
        {
            "custom_id": f"resp-{i}",
            "method": "POST",
            "url": "/v1/responses",
            "body": {"model": "gpt-4o-mini", "input": f"Say {i}.", "max_output_tokens": 30},
        }
        for i in range(3)
    ]
    # small generateContent batch: inline; large expected output: a JSONL file
    lines += [
        {
            "key": f"gen-inline-{i}",
            "model": "gemini-2.5-flash",
            "request": {"contents": [{"parts": [{"text": f"Hello {i}"}]}]},
        }
        for i in range(4)
    ]
    lines += [
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
    lines += [
        {
            "key": f"gem-emb-{i}",
            "model": "gemini-embedding-001",
            "request": {"content": {"parts": [{"text": f"passage {i}"}]}},
        }
        for i in range(6)
    ]
    lines += [{"id": "urgent-1", "prompt": "Answer now.", "deadline": "1h"}]  # interactive
    return lines


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


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    with (spool / "work.jsonl").open("w") as f:
        for line in spool_lines():
            f.write(json.dumps(line) + "\n")
        f.write("{broken\n")
    (tmp_path / "planner.yaml").write_text(CONFIG)
    return tmp_path


def read_sink(folder: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    dead: dict[str, list[Any]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            results.setdefault(record["id"], []).append(record)
    for path in sorted((folder / "dead").glob("*.jsonl")) if (folder / "dead").is_dir() else []:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            dead.setdefault(record["id"], []).append(record)
    return results, dead


def spool_keys() -> set[str]:
    """Every request's own id in the spool (``custom_id``, ``key`` or ``id``)."""
    return {line.get("custom_id") or line.get("key") or line["id"] for line in spool_lines()}


def ledger_of(sandbox: RunningSandbox) -> dict[str, Any]:
    data = httpx.get(sandbox.url + "/_sandbox/ledger").json()
    assert isinstance(data, dict)
    return data


def price(model: str, field: str) -> Decimal:
    return Decimal(str(PRICES[model]["prices"][0][field]))


def run_until_settled(workspace: Path, sandbox: RunningSandbox, passes: int) -> None:
    cfg = load_config(workspace / "planner.yaml")
    for _ in range(passes):
        ctx = build_context(cfg, sandbox_url=sandbox.url)
        run_once(ctx)
        with ctx.session_factory() as session:
            open_states = session.execute(
                select(REQUEST.c.state).where(
                    REQUEST.c.state.notin_(["succeeded", "dead", "rejected"])
                )
            ).all()
        if not open_states:
            return
    raise AssertionError(f"requests still open after {passes} passes: {open_states}")


def answered_once(workspace: Path, sandbox: RunningSandbox) -> dict[str, list[dict[str, Any]]]:
    """One pass; then every spool key has exactly one result and nothing is dead-lettered."""
    run_until_settled(workspace, sandbox, passes=1)
    results, dead = read_sink(workspace / "results")
    assert set(results) == spool_keys() and not dead
    assert all(len(records) == 1 for records in results.values())
    return results


def batches_after_one_pass(workspace: Path, sandbox_factory: Any, *columns: Any) -> list[Any]:
    """One pass against a new sandbox (every key answered once), then ``columns`` of every
    batch row."""
    sandbox = sandbox_factory()
    answered_once(workspace, sandbox)
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url=sandbox.url)
    with ctx.session_factory() as session:
        return list(session.execute(select(*columns)).all())


def test_providers_are_built_after_ingest(workspace: Path, sandbox_factory: Any) -> None:
    """The spool is read with no provider built (nor its SDK imported: their memory is not
    under the tokenizer's encodings, the daemon's peak); the stages after it build each
    provider the first time they talk to it."""
    sandbox = sandbox_factory()
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url=sandbox.url)
    providers = ctx.providers
    assert isinstance(providers, LazyProviders) and providers.built() == []
    built_after: dict[str, list[str]] = {}
    run_once(ctx, on_stage=lambda stage: built_after.setdefault(stage, providers.built()))
    assert built_after["ingest"] == []
    assert sorted(providers.built()) == sorted(providers) == ["gemini", "openai"]
    results, dead = read_sink(workspace / "results")
    assert set(results) == spool_keys() and not dead


def test_every_request_ends_once_with_billed_usage_and_exact_cost(
    workspace: Path, sandbox_factory: Any
) -> None:
    sandbox = sandbox_factory()
    results = answered_once(workspace, sandbox)
    expected = spool_keys()
    assert results["urgent-1"][0]["lane"] == "interactive"
    assert {r[0]["lane"] for k, r in results.items() if k != "urgent-1"} == {"batch"}

    ledger = ledger_of(sandbox)
    billed = {r["key"]: r for r in ledger["requests"]}
    batch_keys = expected - {"urgent-1"}
    for key in batch_keys:
        assert billed[key]["times_billed"] == 1, key
        record = results[key][0]
        assert record["usage"]["input_tokens"] == billed[key]["usage"]["input_tokens"], key
        assert record["usage"]["output_tokens"] == billed[key]["usage"]["output_tokens"], key
        model = record["model"]
        out = record["usage"]["output_tokens"]  # embeddings: 0 tokens, no output price needed
        cost = (
            record["usage"]["input_tokens"] * price(model, "batch_input")
            + (out * price(model, "batch_output") if out else 0)
        ) / MILLION
        assert Decimal(record["cost_usd"]) == cost, key
    # each batch was created once, under our id, one model each
    ours = [b for b in ledger["batches"] if b["our_id"]]
    assert len({b["our_id"] for b in ours}) == len(ours)
    assert len(ours) >= 6  # chat, embeddings, responses, gemini inline, gemini file, gemini embed
    # the gemini file batch was sent as a file, the small one inline
    by_model = {b["model"].removeprefix("models/"): b for b in ours}
    assert by_model["gemini-2.5-flash"]["requests"] == 4
    assert by_model["gemini-2.5-flash-lite"]["requests"] == 40
    jobs = {job.model.removeprefix("models/"): job for job in sandbox.state.jobs.values()}
    assert jobs["gemini-2.5-flash"].inline is True
    assert jobs["gemini-2.5-flash-lite"].inline is False
    # the quarantined line is kept with its reason
    quarantine = list((workspace / "spool" / "quarantine").glob("*.errors.jsonl"))
    assert len(quarantine) == 1 and "invalid_json" in quarantine[0].read_text()


def test_ledger_in_the_store_matches_the_result_files(
    workspace: Path, sandbox_factory: Any
) -> None:
    sandbox = sandbox_factory()
    run_until_settled(workspace, sandbox, passes=1)
    cfg = load_config(workspace / "planner.yaml")
    ctx = build_context(cfg, sandbox_url=sandbox.url)
    results, _ = read_sink(workspace / "results")
    with ctx.session_factory() as session:
        rows = session.execute(select(LEDGER.c.request_id, LEDGER.c.cost_usd)).all()
    assert len(rows) == len(results)
    total_store = sum((r.cost_usd for r in rows), Decimal(0))
    total_files = sum((Decimal(r[0]["cost_usd"]) for r in results.values()), Decimal(0))
    assert total_store == total_files


@pytest.mark.parametrize(
    "faults",
    [
        "line_error_rate=0.25,seed=7",
        "rate_limit=0.4,retry_after=0,seed=11",
        "malformed_line_rate=0.1,missing_line_rate=0.1,seed=5",
    ],
)
def test_faults_still_account_for_every_request(
    workspace: Path, sandbox_factory: Any, faults: str
) -> None:
    sandbox = sandbox_factory(faults)
    run_until_settled(workspace, sandbox, passes=12)
    results, dead = read_sink(workspace / "results")
    expected = spool_keys()
    assert set(results) | set(dead) == expected
    assert not set(results) & set(dead)
    assert all(len(v) == 1 for v in results.values())
    assert all(len(v) == 1 for v in dead.values())
    billed = {r["key"]: r["times_billed"] for r in ledger_of(sandbox)["requests"]}
    # a per-line error is not billed and is retried; a malformed or missing line is billed and
    # dead-lettered, never sent again: nothing is billed twice, every result was billed once
    assert {key: n for key, n in billed.items() if n > 1} == {}
    assert all(billed[key] == 1 for key in results)
    for key, records in dead.items():
        if records[0]["reason"] in ("malformed_result", "missing_result"):
            assert billed.get(key) == 1, key


def test_malformed_and_missing_result_lines_are_dead_lettered_not_billed_twice(
    workspace: Path, sandbox_factory: Any
) -> None:
    """Issue 11: with malformed and missing lines, requests were queued again and billed
    twice. A line that may have been billed is dead-lettered with its reason (and raw text when
    there was one); only ``planner requeue --reason`` sends it again."""
    sandbox = sandbox_factory("malformed_line_rate=0.2,missing_line_rate=0.1,seed=3")
    run_until_settled(workspace, sandbox, passes=4)
    results, dead = read_sink(workspace / "results")
    reasons = {key: records[0]["reason"] for key, records in dead.items()}
    assert set(reasons.values()) == {"malformed_result", "missing_result"}, reasons
    malformed = [
        records[0] for records in dead.values() if records[0]["reason"] == "malformed_result"
    ]
    assert all(record["raw"] for record in malformed)  # the line's text, as received
    billed = {r["key"]: r["times_billed"] for r in ledger_of(sandbox)["requests"]}
    assert {key: n for key, n in billed.items() if n != 1} == {}
    assert set(billed) == set(results) | set(dead)
    # the operator's requeue sends the malformed ones once more (a second charge, accepted)
    sandbox.state.faults = FaultPlan()  # the provider is healthy again
    config = str(workspace / "planner.yaml")
    requeue = ["requeue", "-c", config, "--reason", "malformed_result", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "planner", *requeue],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["requeued"] == len(malformed)
    run_until_settled(workspace, sandbox, passes=2)
    results, _ = read_sink(workspace / "results")
    again = {r["key"]: r["times_billed"] for r in ledger_of(sandbox)["requests"]}
    for record in malformed:
        assert record["id"] in results and again[record["id"]] == 2


def test_a_second_run_ingests_nothing_twice(workspace: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    run_until_settled(workspace, sandbox, passes=1)
    spool = workspace / "spool"
    # the same file dropped again: every key is already stored, nothing is sent again
    done = next((spool / "done").glob("*.jsonl"))
    again = spool / "again.jsonl"
    again.write_text(done.read_text())
    os.utime(again, (1_000_000_000, 1_000_000_000))
    before = ledger_of(sandbox)
    run_until_settled(workspace, sandbox, passes=1)
    after = ledger_of(sandbox)
    assert len(after["batches"]) == len(before["batches"])
    assert [r["times_billed"] for r in after["requests"]] == [
        r["times_billed"] for r in before["requests"]
    ]


def test_gemini_through_its_openai_compatibility_layer(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = [
        {
            "custom_id": f"compat-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gemini-2.5-flash",
                "messages": [{"role": "user", "content": f"Question {i}"}],
                "max_tokens": 40,
            },
        }
        for i in range(5)
    ]
    (spool / "compat.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "planner.yaml").write_text(
        CONFIG.replace("gemini: {kind: gemini}", "gemini: {kind: gemini, openai_compat: true}")
    )
    sandbox = sandbox_factory()
    run_until_settled(tmp_path, sandbox, passes=1)
    results, dead = read_sink(tmp_path / "results")
    assert set(results) == {f"compat-{i}" for i in range(5)} and not dead
    billed = {r["key"]: r for r in ledger_of(sandbox)["requests"]}
    for key, records in results.items():
        assert records[0]["provider"] == "gemini" and records[0]["lane"] == "batch"
        assert billed[key]["times_billed"] == 1
        assert records[0]["usage"]["input_tokens"] == billed[key]["usage"]["input_tokens"]
    compat_jobs = [job for job in sandbox.state.jobs.values() if job.surface == "compat"]
    assert len(compat_jobs) == 1


def test_two_sources_with_the_same_keys_each_get_their_own_results(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    """Keys are unique per source only: two teams both number their lines from 1. Each
    request keeps its own answer (one source per batch: custom_ids stay unique in a file)."""
    config = CONFIG.replace(
        "sources:\n",
        "sources:\n  other: {kind: jsonl_dir, path: other, default_model: gpt-4o-mini,"
        " settle: 0s, sink: out}\n",
    )
    (tmp_path / "planner.yaml").write_text(config)
    for folder, topic in (("spool", "cats"), ("other", "dogs")):
        (tmp_path / folder).mkdir()
        lines = [{"id": f"q{i}", "prompt": f"one fact about {topic} #{i}"} for i in range(6)]
        (tmp_path / folder / "work.jsonl").write_text(
            "".join(json.dumps(line) + "\n" for line in lines)
        )
    sandbox = sandbox_factory()
    run_until_settled(tmp_path, sandbox, passes=1)  # one pass plans, sends and collects both

    results, dead = read_sink(tmp_path / "results")
    assert dead == {}
    assert sorted(results) == [f"q{i}" for i in range(6)]
    for key, records in results.items():  # one result per source, each for its own prompt
        assert sorted(r["source"] for r in records) == ["other", "spool"], key
    ledger = ledger_of(sandbox)
    assert all(b["requests"] == 6 for b in ledger["batches"] if b["our_id"])
    assert len([b for b in ledger["batches"] if b["our_id"]]) == 2


def test_a_single_pass_frees_the_tokenizer_once_intake_is_measured(
    workspace: Path, sandbox_factory: Any
) -> None:
    """``run --once`` measures every request at intake, then drops the encodings (74 MiB)
    before the stages whose memory peaks; nothing after intake loads them again."""
    sandbox = sandbox_factory()
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url=sandbox.url)
    counter = ctx.planner.counter
    assert isinstance(counter, TiktokenCounter)
    loaded_at_release: list[set[str]] = []

    def release() -> None:
        loaded_at_release.append(set(counter._encodings))
        real_release()

    real_release = ctx.release_tokenizer
    run_once(replace(ctx, release_tokenizer=release))
    assert loaded_at_release == [{"o200k_base", "cl100k_base"}]  # used by intake, then freed
    assert counter._encodings == {}  # no later stage needed them
    results, dead = read_sink(workspace / "results")
    assert set(results) == spool_keys()
    assert not dead


def test_results_are_settled_in_numbered_chunks(
    workspace: Path, sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's results are settled four at a time: one results file per chunk, named after
    the batch and the chunk's number, each request once, and the batch counts its chunks."""
    monkeypatch.setenv("PLANNER_COLLECT_CHUNK", "4")
    batches = batches_after_one_pass(
        workspace, sandbox_factory, BATCH.c.id, BATCH.c.request_count, BATCH.c.collected_chunks
    )
    files = {p.name for p in (workspace / "results").glob("*.jsonl")}
    for batch_id, requests, chunks in batches:
        assert chunks == -(-requests // 4), (batch_id, requests, chunks)
        names = {f"{batch_id}.jsonl"} | {f"{batch_id}.{n}.jsonl" for n in range(1, chunks)}
        assert names <= files, (batch_id, names - files)
        for name in names:
            lines = (workspace / "results" / name).read_text().splitlines()
            assert 0 < len(lines) <= 4


def test_results_chunks_are_also_bounded_by_the_bytes_of_their_lines(
    workspace: Path, sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``COLLECT_CHUNK_BYTES`` below the size of any result line, every result read from
    a results file is a chunk of its own (the count bound, 1,000, is never reached): the bytes
    bound is what cuts. Inline results (a small Gemini batch: no input file, its answers in the
    batch itself, already in memory) are cut by count alone."""
    from planner.pipeline import collect

    monkeypatch.setattr(collect, "COLLECT_CHUNK_BYTES", 1)
    batches = batches_after_one_pass(
        workspace,
        sandbox_factory,
        BATCH.c.input_file_id,
        BATCH.c.request_count,
        BATCH.c.collected_chunks,
    )
    from_files = [(n, chunks) for file, n, chunks in batches if file is not None]
    inline = [(n, chunks) for file, n, chunks in batches if file is None]
    assert from_files and all(chunks == n for n, chunks in from_files), batches
    assert all(chunks == 1 for _, chunks in inline), batches
    results, dead = read_sink(workspace / "results")
    assert set(results) == spool_keys() and not dead


def test_planning_rounds_bound_the_batches(
    workspace: Path, sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``PLANNER_PLAN_CHUNK=3`` each planning round takes three queued requests and packs
    them alone: no batch holds more than three, and every request is still answered once."""
    from planner.store.tables import BATCH

    monkeypatch.setenv("PLANNER_PLAN_CHUNK", "3")
    sandbox = sandbox_factory()
    answered_once(workspace, sandbox)
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url=sandbox.url)
    assert ctx.plan_chunk == 3
    with ctx.session_factory() as session:
        sizes = session.execute(select(BATCH.c.request_count)).scalars().all()
    assert len(sizes) > 3 and max(sizes) <= 3  # the spool's batch-bound requests, in threes


def test_batches_the_provider_no_longer_knows_are_dead_lettered_not_left_waiting(
    workspace: Path, sandbox_factory: Any
) -> None:
    """Found trying it as a user: batches submitted to one emulator, polled after a restart
    by another that never heard of them. The batches turned ``failed`` (not found), then each
    pass asked again for their results, for ever, the requests ``submitted``. Their results
    can never be read and they may have been billed: dead-lettered as ``missing_result``, the
    batches collected; ``planner requeue`` sends them once more."""
    from prometheus_client import CollectorRegistry

    from planner.metrics import Metrics
    from planner.runtime import clock, passes
    from planner.runtime.observer import MetricsObserver

    first, second = sandbox_factory(), sandbox_factory()
    cfg = load_config(workspace / "planner.yaml")
    ctx = build_context(cfg, sandbox_url=first.url)
    metrics = Metrics(CollectorRegistry(), known_models=ctx.catalog.models(), process_metrics=False)
    steps = {"ingest", "submit"}
    passes.run_steps(ctx, clock.utc_now(), MetricsObserver(metrics), passes.ONCE, steps)
    submitted = {r["key"] for r in ledger_of(first)["requests"] if r["lane"] == "batch"}
    assert submitted, "nothing was batched"

    run_until_settled(workspace, second, passes=3)  # the provider forgot every batch
    results, dead = read_sink(workspace / "results")
    assert set(dead) == submitted
    assert all(records[0]["reason"] == "missing_result" for records in dead.values())
    messages = [records[0]["error"]["message"] for records in dead.values()]
    assert all("no longer knows batch" in message for message in messages)
    assert set(results) | set(dead) == spool_keys()  # nothing left waiting
    with build_context(cfg, sandbox_url=second.url).session_factory() as session:
        states = {state for (state,) in session.execute(select(BATCH.c.state))}
    assert states == {"collected"}
    assert not any(r["key"] in submitted for r in ledger_of(second)["requests"])

    config = str(workspace / "planner.yaml")
    requeue = ["requeue", "-c", config, "--reason", "missing_result", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "planner", *requeue], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["requeued"] == len(submitted)
    run_until_settled(workspace, second, passes=2)
    results, _ = read_sink(workspace / "results")
    billed = {r["key"]: r["times_billed"] for r in ledger_of(second)["requests"]}
    assert submitted <= set(results) and all(billed[key] == 1 for key in submitted)


def test_each_batch_is_told_to_the_observer_once_settled(
    workspace: Path, sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collect hands each batch's settle result to the observer as soon as the batch is settled
    and keeps none of them (they hold two integers per billed request): every collected batch
    is told once, before the stage's ``collected``, with its own counts, and the estimate-error
    histogram counts every billed result (each had an estimate), as the ledger has them."""
    from prometheus_client import CollectorRegistry

    from planner.metrics import Metrics
    from planner.pipeline.collect import CollectResult
    from planner.pipeline.context import StageContext
    from planner.pipeline.deliver import SettleResult
    from planner.runtime import clock, passes
    from planner.runtime.observer import MetricsObserver

    monkeypatch.setenv("PLANNER_PLAN_CHUNK", "3")  # several batches
    told: list[tuple[str, str, int]] = []

    class Recording(MetricsObserver):
        def batch_collected(self, ctx: StageContext, batch_id: str, settled: SettleResult) -> None:
            told.append(("batch", batch_id, settled.succeeded))
            super().batch_collected(ctx, batch_id, settled)

        def collected(self, ctx: StageContext, result: CollectResult) -> None:
            told.append(("stage", ",".join(result.batches), result.succeeded))
            super().collected(ctx, result)

    sandbox = sandbox_factory()
    ctx = build_context(load_config(workspace / "planner.yaml"), sandbox_url=sandbox.url)
    registry = CollectorRegistry()
    observer = Recording(Metrics(registry, known_models=ctx.catalog.models()))
    passes.run_pass(ctx, clock.utc_now, observer)

    *batches, stage = told
    assert stage[0] == "stage" and all(kind == "batch" for kind, _, _ in batches)
    assert [batch_id for _, batch_id, _ in batches] == stage[1].split(",")
    assert len(batches) > 3 and sum(n for _, _, n in batches) == stage[2]
    with ctx.session_factory() as session:
        per_batch = dict(
            session.execute(
                select(LEDGER.c.batch_id, func.count())
                .where(LEDGER.c.lane == "batch")
                .group_by(LEDGER.c.batch_id)
            ).all()
        )
    assert {batch_id: n for _, batch_id, n in batches} == per_batch
    observed = sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "planner_estimate_error_ratio"
        for sample in metric.samples
        if sample.name.endswith("_count")
    )
    with ctx.session_factory() as session:
        billed = session.execute(select(func.count()).select_from(LEDGER)).scalar_one()
    assert billed == sum(per_batch.values()) + 1  # and urgent-1, told by the interactive lane
    assert observed == billed


def test_a_pass_says_how_many_requests_wait_for_room(workspace: Path, sandbox_factory: Any) -> None:
    """Batch-bound requests a pass leaves queued because their provider's queue is full (here
    two open jobs of one request each) are counted in the plan's figures, as the store has
    them, instead of going unmentioned."""
    config = workspace / "planner.yaml"
    config.write_text(CONFIG + "limits:\n  openai: {max_requests: 1, max_concurrent_batches: 2}\n")
    sandbox = sandbox_factory()
    ctx = build_context(load_config(config), sandbox_url=sandbox.url)
    summary = run_once(ctx)
    with ctx.session_factory() as session:
        queued = session.execute(
            select(func.count()).select_from(REQUEST).where(REQUEST.c.state == "queued")
        ).scalar_one()
    assert queued > 0
    assert summary.stages["plan"]["waiting_for_room"] == queued

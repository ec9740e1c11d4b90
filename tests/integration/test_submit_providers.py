"""Each provider's batches are submitted on their own: one provider never waits for another.

A submit is mostly waiting (an upload of up to 200 MB, a create the provider checks before it
answers, the SDK's first import), so the submit stage sends each provider's batches on a thread
of its own. The test makes every provider's first create wait until every other provider's
first create has begun: sent one after the other, the first would wait in vain and the stage
would fail; sent side by side, all meet and every batch is submitted once, with the real SDKs
against the sandbox. A provider module imports only its own SDK.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planner.config import load_config
from planner.core.states import BatchState
from planner.pipeline.context import StageContext
from planner.pipeline.intake import ingest_all
from planner.pipeline.plan_stage import run_plan_stage
from planner.pipeline.submit import run_submit_stage
from planner.providers.base import BatchProvider
from planner.runtime import clock
from planner.runtime.runner import run_once
from planner.runtime.wiring import build_context
from planner.sandbox import RunningSandbox, serve
from planner.store import batches as store_batches
from tests.integration.test_run_once import CONFIG, ledger_of, spool_lines

MEET_SECONDS = 30.0  # far longer than a create takes: only a submit that never comes misses it


class Meeting:
    """A provider whose first ``submit`` waits until every provider of ``barrier`` is in its
    own first ``submit`` (``threading.BrokenBarrierError`` if one never comes)."""

    def __init__(self, inner: BatchProvider, barrier: threading.Barrier) -> None:
        self._inner = inner
        self._barrier = barrier
        self._met = False
        self.threads: set[str] = set()
        self.kind = inner.kind

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.add(threading.current_thread().name)
        if not self._met:
            self._met = True
            self._barrier.wait(MEET_SECONDS)
        return self._inner.submit(*args, **kwargs)


@pytest.fixture()
def sandbox() -> Iterator[RunningSandbox]:
    running = serve(speed=0.0)
    yield running
    running.stop()


def meeting_context(
    tmp_path: Path, sandbox: RunningSandbox
) -> tuple[StageContext, dict[str, Meeting]]:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "work.jsonl").write_text("".join(json.dumps(line) + "\n" for line in spool_lines()))
    (tmp_path / "planner.yaml").write_text(CONFIG)
    ctx = build_context(load_config(tmp_path / "planner.yaml"), sandbox_url=sandbox.url)
    barrier = threading.Barrier(len(ctx.providers))
    meetings = {name: Meeting(ctx.providers[name], barrier) for name in ctx.providers}
    providers: dict[str, Any] = {**ctx.providers, **meetings}
    return dataclasses.replace(ctx, providers=providers), meetings


def test_each_providers_batches_are_sent_beside_the_others(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    ctx, meetings = meeting_context(tmp_path, sandbox)
    assert len(meetings) >= 2
    now = clock.utc_now()
    ingest_all(ctx.sources, ctx.session_factory, now)
    run_plan_stage(ctx.planner, ctx.session_factory, now, ctx.plan_chunk)
    with ctx.session_factory() as session:
        planned = store_batches.batches_in(session, (BatchState.PLANNED,))
    assert {b.provider for b in planned} == set(meetings)

    result = run_submit_stage(ctx, now, all_due=True)

    assert sorted(result.submitted) == sorted(b.id for b in planned)
    assert result.submitted == [b.id for b in planned]  # reported in the order they were due
    assert not (result.deferred or result.failed or result.skipped or result.adopted)
    # one thread per provider, each sending all of its provider's batches
    threads = [m.threads for m in meetings.values()]
    assert all(len(t) == 1 for t in threads) and len(set().union(*threads)) == len(threads)
    ours = [b["our_id"] for b in ledger_of(sandbox)["batches"] if b["our_id"]]
    assert sorted(ours) == sorted(b.id for b in planned)  # each created once


def test_a_whole_pass_meets_too_and_bills_each_request_once(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    ctx, _ = meeting_context(tmp_path, sandbox)
    result = run_once(ctx, now=clock.utc_now)
    assert result.stages["submit"]["submitted"] >= 2
    requests = ledger_of(sandbox)["requests"]
    assert requests and all(r["times_billed"] == 1 for r in requests)


@pytest.mark.parametrize(
    ("module", "other_sdk"),
    [("planner.providers.openai", "google.genai"), ("planner.providers.gemini", "openai")],
)
def test_a_provider_imports_only_its_own_sdk(module: str, other_sdk: str) -> None:
    code = f"import sys, {module}; print({other_sdk!r} in sys.modules)"
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "False"

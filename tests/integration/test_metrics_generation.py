"""The metrics reread the store only when its generation moved, and never show a stale figure.

``runtime/wiring.store_reader`` keeps what it read (counts by state, oldest batches, the ledger's
sums) under the store's generation (``store/generation.py``). An idle daemon's passes must not
move it (else every scrape would scan again), and every change, by this process or another
one, must (else a scrape would show an old figure). Both backends, with the real pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from planner.config import load_config
from planner.core.states import RequestState
from planner.metrics import StoreReading
from planner.pipeline.context import StageContext
from planner.pipeline.decisions import budget_gauges
from planner.runtime import clock
from planner.runtime.runner import run_once
from planner.runtime.wiring import build_context, store_reader
from planner.store import batches, generation, ledger, requests
from planner.store.engine import make_engine, make_session_factory
from tests.contract.store_backends import BACKENDS, backend_url
from tests.contract.test_store import make_request

CONFIG = """
state_dir: {state}
providers:
  openai: {{kind: openai, models: ["gpt-*", "text-embedding-*"]}}
  gemini: {{kind: gemini, models: ["gemini-*"]}}
sources:
  spool: {{kind: jsonl_dir, path: {spool}, settle: 0s, sink: out}}
sinks:
  out: {{kind: jsonl_dir, path: {out}}}
store: {{url_env: GENERATION_STORE_URL}}
policies:
  default: {{default_deadline: 48h, min_savings_usd: "0"}}
metrics: {{enabled: false}}
"""


def _spool(folder: Path, name: str, count: int) -> None:
    with (folder / name).open("w", encoding="utf-8") as f:
        for i in range(count):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]}
            line = {"custom_id": f"{name}-{i}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**line, "body": body}) + "\n")


@contextmanager
def _scans(engine: Engine) -> Iterator[list[str]]:
    """The statements that count requests by state, as the engine runs them."""
    seen: list[str] = []

    def note(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if "GROUP BY" in statement and "request.state" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _fresh(ctx: StageContext) -> StoreReading:
    with ctx.session_factory() as s:
        return StoreReading(
            requests=requests.counts_by_state(s),
            batches=batches.counts_by_state(s),
            oldest=batches.oldest_times(s),
            spend=ledger.spend(s),
        )


def _same(cached: StoreReading, fresh: StoreReading) -> None:
    assert dict(cached.requests) == dict(fresh.requests)
    assert dict(cached.batches) == dict(fresh.batches)
    assert dict(cached.oldest) == dict(fresh.oldest)
    assert list(cached.spend) == list(fresh.spend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scrapes_reread_after_every_change_and_never_while_idle(
    backend: str, tmp_path: Path, sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    text = CONFIG.format(state=tmp_path / "state", spool=spool, out=tmp_path / "out")
    (tmp_path / "planner.yaml").write_text(text)
    sandbox = sandbox_factory()
    with backend_url(backend, tmp_path) as url:
        monkeypatch.setenv("GENERATION_STORE_URL", url)
        ctx = build_context(load_config(tmp_path / "planner.yaml"), sandbox_url=sandbox.url)
        engine = ctx.session_factory.kw["bind"]  # type: ignore[attr-defined]
        reader = store_reader(lambda: ctx)

        def read() -> tuple[StoreReading, int]:
            """A scrape's reading, and how many times it counted the requests by state."""
            with _scans(engine) as scans:
                reading = reader()
            return reading, len(scans)

        first, scanned = read()
        assert scanned == 1
        _same(first, _fresh(ctx))
        assert read()[1] == 0  # nothing changed: the second scrape reads one row

        _spool(spool, "a.jsonl", 30)
        run_once(ctx)  # ingest, plan, submit, collect: every stage changes the store
        after, scanned = read()
        assert scanned == 1
        _same(after, _fresh(ctx))
        assert after.requests[RequestState.SUCCEEDED.value] == 30
        assert sum(group.requests for group in after.spend) == 30

        with ctx.session_factory() as s:
            moved = generation.current(s)
        run_once(ctx)  # an idle pass: stage bookkeeping only
        with ctx.session_factory() as s:
            assert generation.current(s) == moved
        assert read()[1] == 0

        # another process (a planner command, a replica) changes the store
        other = make_engine(url)
        try:
            with make_session_factory(other)() as s, s.begin():
                requests.ingest(s, [make_request("late")], datetime.now(UTC))
        finally:
            other.dispose()
        late, scanned = read()
        assert scanned == 1
        _same(late, _fresh(ctx))
        assert late.requests[RequestState.QUEUED.value] == 1


BUDGETED = CONFIG.replace(
    'min_savings_usd: "0"}}',
    'min_savings_usd: "0", budget: {{daily_usd: "5.00", monthly_usd: "100.00"}}}}',
)


def test_budget_gauges_are_read_again_when_a_window_rolls_over(
    tmp_path: Path, sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budgets' gauges move with the clock as well as the store: kept while both stand
    still, read again when the day's window starts anew, and equal to a fresh read."""
    spool = tmp_path / "spool"
    spool.mkdir()
    _spool(spool, "a.jsonl", 5)
    text = BUDGETED.format(state=tmp_path / "state", spool=spool, out=tmp_path / "out")
    (tmp_path / "planner.yaml").write_text(text)
    monkeypatch.setenv("GENERATION_STORE_URL", f"sqlite:///{tmp_path / 'planner.db'}")
    ctx = build_context(load_config(tmp_path / "planner.yaml"), sandbox_url=sandbox_factory().url)
    run_once(ctx)
    engine = ctx.session_factory.kw["bind"]  # type: ignore[attr-defined]
    reader = store_reader(lambda: ctx)
    day = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(clock, "utc_now", lambda: day)

    def sums() -> tuple[dict[str, Any], int]:
        """The gauges a scrape exports, and how many times it summed a budget window."""
        seen: list[str] = []

        def note(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
            if "ledger.recorded_at >=" in statement:
                seen.append(statement)

        event.listen(engine, "before_cursor_execute", note)
        try:
            budgets = dict(reader().budgets)
        finally:
            event.remove(engine, "before_cursor_execute", note)
        return budgets, len(seen)

    def fresh() -> dict[str, Any]:
        with ctx.session_factory() as s:
            return budget_gauges(s, ctx.planner, clock.utc_now())

    first, summed = sums()
    assert summed >= 1 and first == fresh()
    assert first["budget_spent"]["policy:default/day"] > 0  # the run billed today
    assert sums()[1] == 0  # same store, same windows
    day += timedelta(days=1)
    rolled, summed = sums()
    assert summed >= 1 and rolled == fresh()
    assert rolled["budget_spent"]["policy:default/day"] == 0  # a new day has spent nothing


def test_a_reload_onto_another_store_reads_that_store(
    tmp_path: Path, sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores can stand at the same generation: after a reload that points the daemon at
    another store, the first scrape reads the new one whole."""
    contexts = []
    url = sandbox_factory().url
    for name, count in (("one", 3), ("two", 7)):
        root = tmp_path / name
        spool = root / "spool"
        spool.mkdir(parents=True)
        _spool(spool, f"{name}.jsonl", count)
        (root / "planner.yaml").write_text(
            CONFIG.format(state=root / "state", spool=spool, out=root / "out")
        )
        monkeypatch.setenv("GENERATION_STORE_URL", f"sqlite:///{root / 'planner.db'}")
        ctx = build_context(load_config(root / "planner.yaml"), sandbox_url=url)
        run_once(ctx)
        contexts.append(ctx)
    current = [contexts[0]]
    read = store_reader(lambda: current[0])
    assert read().requests[RequestState.SUCCEEDED.value] == 3
    current[0] = contexts[1]  # what a SIGHUP with another store URL does
    moved = read()
    _same(moved, _fresh(contexts[1]))
    assert moved.requests[RequestState.SUCCEEDED.value] == 7

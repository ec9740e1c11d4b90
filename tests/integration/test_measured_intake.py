"""The daemon's path measures each request once, in its read workers, and planning uses it.

A spool long enough to start the read workers (``runtime/wiring.DAEMON_LOCAL_CHUNKS``) goes
through ``run --once`` with the sandbox serving in a thread of this process, so the workers
come from a fork server. Every stored request must carry its measured facts, equal to what
measuring it here gives, and planning's raw estimate must be that count: the same plan as
reading in one process (``PLANNER_READ_WORKERS=0``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from planner.config import load_config
from planner.core.model import BODY_NOT_LOADED, Endpoint, Request
from planner.core.states import RequestState
from planner.pipeline.measure import measure
from planner.pipeline.plan_stage import run_plan_stage
from planner.runtime.runner import run_once
from planner.runtime.wiring import DAEMON_LOCAL_CHUNKS, build_context
from planner.sources.lines import CHUNK_LINES
from planner.store.requests import ingest, queued_for_planning
from planner.store.tables import REQUEST
from tests.contract.store_backends import BACKENDS, backend_url

LINES = (DAEMON_LOCAL_CHUNKS + 3) * CHUNK_LINES

CONFIG = """
state_dir: {state}
providers:
  openai: {{kind: openai, models: ["gpt-*", "text-embedding-*"]}}
  gemini: {{kind: gemini, models: ["gemini-*"]}}
sources:
  spool: {{kind: jsonl_dir, path: {spool}, settle: 0s, sink: out}}
sinks:
  out: {{kind: jsonl_dir, path: {out}}}
store: {{url_env: MEASURED_STORE_URL}}
policies:
  default: {{batch_window: 24h, default_deadline: 48h, min_savings_usd: "0"}}
metrics: {{enabled: false}}
"""


def _line(i: int) -> dict[str, Any]:
    words = " ".join(f"word{i * 7 + j} é 日本" for j in range(i % 40))
    if i % 3 == 0:
        return {"id": f"e{i}", "model": "text-embedding-3-small", "text": words or "x"}
    if i % 3 == 1:
        request = {"contents": [{"parts": [{"text": words or "y"}]}]}
        return {"key": f"g{i}", "model": "gemini-3.5-flash-lite", "request": request}
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": words or "z"},
    ]
    body = {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 20}
    return {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}


def _workspace(root: Path) -> Path:
    spool = root / "spool"
    spool.mkdir(parents=True)
    with (spool / "big.jsonl").open("w", encoding="utf-8") as f:
        for i in range(LINES):
            f.write(json.dumps(_line(i), ensure_ascii=i % 2 == 0) + "\n")
        f.write("{broken\n")
    text = CONFIG.format(state=root / "state", spool=spool, out=root / "out")
    (root / "planner.yaml").write_text(text)
    return root / "planner.yaml"


def _planned(config: Path, sandbox_url: str) -> dict[str, tuple[Any, ...]]:
    ctx = build_context(load_config(config), sandbox_url=sandbox_url)
    run_once(ctx)
    columns = (
        REQUEST.c.key,
        REQUEST.c.state,
        REQUEST.c.est_raw_input_tokens,
        REQUEST.c.est_input_tokens,
        REQUEST.c.batch_id.is_not(None),
    )
    with ctx.session_factory() as session:
        rows = session.execute(select(*columns)).all()
    return {row[0]: tuple(row[1:]) for row in rows}


@pytest.mark.parametrize("backend", BACKENDS)
def test_requests_are_measured_once_on_every_core_and_planned_alike(
    backend: str, tmp_path: Path, sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = sandbox_factory()
    config = _workspace(tmp_path / "workers")
    monkeypatch.setenv("PLANNER_READ_WORKERS", "2")
    with backend_url(backend, tmp_path / "workers") as url:
        monkeypatch.setenv("MEASURED_STORE_URL", url)
        _check_measured(config, sandbox.url, monkeypatch, tmp_path)


def _check_measured(
    config: Path, sandbox_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with_workers = _planned(config, sandbox_url)
    assert len(with_workers) == LINES

    ctx = build_context(load_config(config), sandbox_url=sandbox_url)
    with ctx.session_factory() as session, session.begin():
        stored = list(queued_for_planning(session, states=tuple(RequestState)))
    assert len(stored) == LINES
    for row in stored:
        facts = row.request.measured
        assert facts is not None, row.request.key
        again = measure(replace(row.request, measured=None), ctx.catalog, ctx.planner.counter)
        assert facts == again.measured

    monkeypatch.setenv("PLANNER_READ_WORKERS", "0")
    here = _workspace(tmp_path / "here")
    monkeypatch.setenv("MEASURED_STORE_URL", f"sqlite:///{tmp_path / 'here' / 'planner.db'}")
    in_one_process = _planned(here, sandbox_url)
    assert in_one_process == with_workers
    raw = [r[1] for r in with_workers.values()]
    assert all(isinstance(n, int) and n > 0 for n in raw)


def test_planning_reads_measured_requests_without_their_bodies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A measured request is planned from its facts alone (its body is not even read); one
    whose model's encoding changed since intake is counted again, from its body."""
    config = _workspace(tmp_path)
    monkeypatch.setenv("MEASURED_STORE_URL", f"sqlite:///{tmp_path / 'planner.db'}")
    ctx = build_context(load_config(config), sandbox_url="http://127.0.0.1:9")
    now = datetime.now(UTC)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me again"}]}

    def measured(key: str, encoding: str) -> Request:
        plain = Request("spool", key, "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, body, now)
        facts = measure(plain, ctx.catalog, ctx.planner.counter).measured
        assert facts is not None
        return replace(plain, measured=replace(facts, encoding=encoding, input_tokens=999_999))

    with ctx.session_factory() as session, session.begin():
        ingest(session, [measured("fresh", "o200k_base"), measured("stale", "cl100k_base")], now)
    with ctx.session_factory() as session, session.begin():
        loaded = list(queued_for_planning(session, bodies=False))
    assert [s.request.body for s in loaded] == [BODY_NOT_LOADED, BODY_NOT_LOADED]

    run_plan_stage(ctx.planner, ctx.session_factory, now, chunk=10)
    with ctx.session_factory() as session:
        raw = dict(session.execute(select(REQUEST.c.key, REQUEST.c.est_raw_input_tokens)).all())
    assert raw["fresh"] == 999_999  # the stored count, not the body's
    counted = measure(
        replace(loaded[1].request, body=body, measured=None), ctx.catalog, ctx.planner.counter
    )
    assert counted.measured is not None
    assert raw["stale"] == counted.measured.input_tokens  # counted again with o200k_base

"""Two replicas on one PostgreSQL queue send each interactive request once between them.

Both run the interactive lane at the same moment over the same waiting requests (each with
its own owner, as two hosts would), through the real SDK to one sandbox. The outbox's
compare-and-set intent decides who sends what: the sandbox bills every request exactly once,
and every request has exactly one result line.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from planner.config import load_config
from planner.core.states import RequestState
from planner.pipeline.context import StageContext
from planner.pipeline.intake import ingest_all
from planner.pipeline.interactive import InteractiveResult, run_interactive_stage
from planner.pipeline.plan_stage import run_plan_stage
from planner.runtime import clock
from planner.runtime.wiring import build_context
from planner.store import requests, sends
from tests.contract.store_backends import pg_schema_url
from tests.integration.test_run_once import ledger_of, read_sink

N = 60
CONFIG = """
state_dir: state
store: {{url: "{url}"}}
providers:
  openai: {{kind: openai}}
sources:
  spool: {{kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, sink: out}}
sinks:
  out: {{kind: jsonl_dir, path: results}}
"""


def test_two_replicas_send_each_request_once(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory("slow=0.05")  # calls overlap: both replicas are busy at once
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = [{"id": f"u{i}", "prompt": f"Now {i}.", "deadline": "1h"} for i in range(N)]
    (spool / "urgent.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pg_schema_url() as url:
        (tmp_path / "planner.yaml").write_text(CONFIG.format(url=url))
        cfg = load_config(tmp_path / "planner.yaml")
        base = build_context(cfg, sandbox_url=sandbox.url)
        ingest_all(base.sources, base.session_factory, clock.utc_now())
        run_plan_stage(base.planner, base.session_factory, clock.utc_now(), base.plan_chunk)
        replicas: list[StageContext] = [
            dataclasses.replace(
                build_context(cfg, sandbox_url=sandbox.url), owner=f"replica-{name}:1:t"
            )
            for name in ("a", "b")
        ]
        outcomes: list[InteractiveResult] = []
        start = threading.Barrier(len(replicas))

        def replica(ctx: StageContext) -> None:
            start.wait()
            outcomes.append(
                run_interactive_stage(ctx, clock.utc_now(), sleep=time.sleep, clock=clock.monotonic)
            )

        threads = [threading.Thread(target=replica, args=(ctx,)) for ctx in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        with base.session_factory() as session:
            states = Counter(r.state for r in requests.load(session, list(range(1, N + 1))))
            left = sends.load(session)
    assert len(outcomes) == 2
    assert sum(o.succeeded for o in outcomes) == N
    assert all(o.succeeded for o in outcomes), "both replicas took part"
    assert states == {RequestState.SUCCEEDED: N} and left == []
    billed = {
        r["key"]: r["lanes"].get("interactive", 0)
        for r in ledger_of(sandbox)["requests"]
        if r["lanes"].get("interactive")
    }
    assert billed == {f"u{i}": 1 for i in range(N)}
    results, dead = read_sink(tmp_path / "results")
    assert dead == {} and {k: len(v) for k, v in results.items()} == {f"u{i}": 1 for i in range(N)}

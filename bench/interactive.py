"""The interactive lane's own cost: what the outbox adds to each call.

Usage::

    python -m bench interactive          # 2,000 urgent requests (quick)
    python -m bench interactive 10000

Every call goes to a sandbox in this process (real SDK, real HTTP on 127.0.0.1, answers at
once), so the provider is as fast as it can be and what remains is planner's own overhead: the
worst case for the outbox. Two runs over the same N requests, in the same process:

* baseline — ``provider.call_interactive`` for each request on a pool of
  ``interactive_concurrency`` threads, nothing stored (what a bare script would do);
* lane     — ``run_interactive_stage``: per request an intent committed before the call and
  the answer after it, then per chunk the sink write and the settling transaction (ledger,
  state change, outbox rows deleted), on SQLite with ``synchronous=FULL``.

It prints calls per second of both and their ratio. Against a real provider a call takes
hundreds of milliseconds, so the per-request overhead measured here is what matters.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from planner.config import load_config
from planner.pipeline.intake import ingest_all
from planner.pipeline.interactive import run_interactive_stage
from planner.pipeline.plan_stage import run_plan_stage
from planner.providers.base import BatchLine
from planner.runtime import clock
from planner.runtime.wiring import build_context
from planner.sandbox import serve
from planner.store import requests as store_requests
from planner.store import sends

CONFIG = """
state_dir: state
providers: {openai: {kind: openai}}
sources:
  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, sink: out}
sinks: {out: {kind: jsonl_dir, path: results}}
metrics: {enabled: false}
"""


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    sandbox = serve(speed=0.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "spool").mkdir()
            (folder / "planner.yaml").write_text(CONFIG)
            with (folder / "spool" / "urgent.jsonl").open("w") as f:
                for i in range(n):
                    line = {"id": f"u{i}", "prompt": f"Answer now {i}.", "deadline": "1h"}
                    f.write(json.dumps(line) + "\n")
            ctx = build_context(load_config(folder / "planner.yaml"), sandbox_url=sandbox.url)
            ingest_all(ctx.sources, ctx.session_factory, clock.utc_now())
            run_plan_stage(ctx.planner, ctx.session_factory, clock.utc_now(), ctx.plan_chunk)
            with ctx.session_factory() as session:
                waiting = list(store_requests.queued_for_planning(session, states=sends.SENDABLE))
            assert len(waiting) == n, f"{len(waiting)} of {n} requests went interactive"
            provider = ctx.providers["openai"]
            lines = [BatchLine.from_request(s.request) for s in waiting]

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=ctx.interactive_concurrency) as pool:
                answers = list(pool.map(lambda x: provider.call_interactive(x, flex=False), lines))
            baseline = time.perf_counter() - started
            assert all(a.ok for a in answers)

            started = time.perf_counter()
            result = run_interactive_stage(
                ctx, datetime.now(UTC), sleep=time.sleep, clock=time.monotonic
            )
            lane = time.perf_counter() - started
            assert result.succeeded == n, result
    finally:
        sandbox.stop()
    print(f"requests:            {n:,} (concurrency {ctx.interactive_concurrency})")
    print(f"baseline (SDK only): {n / baseline:8,.0f} calls/s")
    print(
        f"interactive lane:    {n / lane:8,.0f} calls/s = {baseline / lane:.2f}x baseline, "
        f"{(lane - baseline) / n * 1000:.1f} ms added per request"
    )


if __name__ == "__main__":
    main()

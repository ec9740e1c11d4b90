"""The daemon's own path for a large drop: ingest into the store, then plan into batches.

Usage::

    python -m bench store            # 100,000 embedding requests (quick)
    python -m bench store 2000000    # the Friday-evening corpus

`python -m bench` measures `planner plan` and `run --once` against the tokenizer floor. This
one measures what `planner run` does with an embeddings spool, against SQLite under a
temporary state folder, each phase in a fresh subprocess so peak RSS belongs to it:

* baseline — ``JsonlDirSource.scan`` alone (read, parse, validate every line);
* ingest   — ``ingest_all``: claim the file, parse and validate every line, insert it
  (idempotent per (source, key)), finish the claim;
* plan     — ``run_plan_stage`` rounds until nothing is queued: estimate (tiktoken), price,
  decide, pack under every limit
  (and the enqueued-token budget), write the batches and move every request to ``planned``.

It prints requests per second of each, as ratios of the baseline measured in the same run,
the peak RSS of each phase's process and the peak RSS and PSS of its process tree (read workers
included, sampled every 50 ms). No provider is called.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.tree_memory import TreeSampler

WORDS = "the batch planner sends requests that can wait at half the price of interactive"


def write_spool(folder: Path, n: int) -> None:
    """N embedding requests (simple lines, 20-60 words), seed 7."""
    rng = random.Random(7)
    with (folder / "corpus.jsonl").open("w") as f:
        for i in range(n):
            text = " ".join(rng.choice(WORDS.split()) for _ in range(rng.randint(20, 60)))
            f.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")


CONFIG = """
state_dir: state
providers: {openai: {kind: openai}}
limits: {openai: {max_enqueued_tokens: 100000000000}}  # admission control is not measured here
sources:
  spool: {kind: jsonl_dir, path: spool, settle: 0s, default_embedding_model: text-embedding-3-small}
metrics: {enabled: false}
"""


def phase(which: str, folder: Path) -> dict[str, float]:
    from planner.config import load_config
    from planner.pipeline.intake import ingest_all
    from planner.pipeline.plan_stage import run_plan_stage
    from planner.runtime.wiring import build_context
    from planner.store import requests as store_requests

    ctx = build_context(load_config(folder / "planner.yaml"), sandbox_url="http://127.0.0.1:9")
    now = datetime.now(UTC) + timedelta(hours=1)
    tree = TreeSampler(os.getpid()).start()  # this process and any read workers
    started = time.perf_counter()
    if which == "baseline":
        count = sum(1 for _ in ctx.sources[0].scan(now))
    elif which == "ingest":
        result = ingest_all(ctx.sources, ctx.session_factory, now)
        count = sum(result.inserted.values())
    else:
        count = 0
        while True:
            planned = run_plan_stage(ctx.planner, ctx.session_factory, now, ctx.plan_chunk)
            done = sum(planned.lanes.values())
            if not done:
                break
            count += done
        with ctx.session_factory() as session:
            left = store_requests.counts_by_state(session).get("queued", 0)
        assert left == 0, f"{left} requests still queued"
    elapsed = time.perf_counter() - started
    tree.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "elapsed": elapsed,
        "count": count,
        "rss_kb": rss,
        "tree_rss_kb": tree.peak_rss_kib,
        "tree_pss_kb": tree.peak_pss_kib,
        "processes": tree.most_processes,
    }


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--phase":
        print(json.dumps(phase(sys.argv[2], Path(sys.argv[3]))))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "spool").mkdir()
        (folder / "planner.yaml").write_text(CONFIG)
        write_spool(folder / "spool", n)
        figures = {}
        for which in ("baseline", "ingest", "plan"):  # in order: plan reads what ingest stored
            out = subprocess.run(
                [sys.executable, "-m", "bench.store_path", "--phase", which, str(folder)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            figures[which] = json.loads(out.strip().splitlines()[-1])
        db_mib = (folder / "state" / "planner.db").stat().st_size / 2**20
    base = figures["baseline"]
    assert all(f["count"] == n for f in figures.values()), figures
    base_rate = n / base["elapsed"]
    print(f"requests:          {n:,}  (store: {db_mib:,.0f} MiB of SQLite)")
    for which, label in (("baseline", "baseline (scan)"), ("ingest", "ingest"), ("plan", "plan")):
        f = figures[which]
        rate = n / f["elapsed"]
        print(
            f"{label + ':':<18} {rate:>9,.0f} req/s = {rate / base_rate:5.2f}x baseline, "
            f"peak RSS {f['rss_kb'] / 1024:,.0f} MiB = {f['rss_kb'] / base['rss_kb']:.2f}x; "
            f"tree of {f['processes']}: RSS {f['tree_rss_kb'] / 1024:,.0f} MiB, "
            f"PSS {f['tree_pss_kb'] / 1024:,.0f} MiB"
        )


if __name__ == "__main__":
    main()

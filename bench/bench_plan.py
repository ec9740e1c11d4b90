"""Planning benchmark: the dry run (`planner plan`) over a large embeddings spool, as ratios.

Usage::

    python bench/bench_plan.py            # 100,000 requests (quick)
    python bench/bench_plan.py 2000000    # the Friday-evening corpus: 2 million embeddings

It writes N embedding requests (simple lines for text-embedding-3-small, sentences of 20-60
words) into a temporary spool and measures, each in a fresh subprocess so peak RSS belongs to
one phase only:

* baseline — ``JsonlDirSource.scan`` alone (read, parse, validate every line);
* plan     — the same scan plus estimate (tiktoken), price in every lane, decide and pack
  (``pipeline.preview.build_report``), i.e. everything ``planner plan`` does.

It prints requests per second of both, their ratio, and peak RSS of both. Set
``TIKTOKEN_CACHE_DIR`` to a folder with the BPE files (otherwise estimates fall back to bytes/4
and the figures measure that rule instead).
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

WORDS = tuple(
    [
        "the",
        "batch",
        "planner",
        "sends",
        "requests",
        "that",
        "can",
        "wait",
        "at",
        "half",
        "the",
        "price",
        "of",
        "interactive",
    ]
)


def write_spool(folder: Path, n: int) -> None:
    rng = random.Random(7)
    with (folder / "corpus.jsonl").open("w") as f:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
            f.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")


def phase(which: str, folder: Path) -> tuple[float, int, int]:
    from planner.config import parse_config
    from planner.pipeline.preview import build_report
    from planner.runtime.wiring import build_planner, build_sources, catalog_for

    cfg = parse_config(
        "providers: {openai: {kind: openai}}\n"
        "sources: {spool: {kind: jsonl_dir, path: spool, settle: 0s,"
        " default_embedding_model: text-embedding-3-small}}\n",
        base_dir=folder,
    )
    catalog = catalog_for(cfg)
    (source,) = build_sources(cfg, catalog)
    now = datetime.now(UTC) + timedelta(hours=1)
    started = time.perf_counter()
    if which == "baseline":
        count = sum(1 for _ in source.scan(now))
    else:
        report = build_report(source.scan(now), build_planner(cfg, catalog), now)
        count = report.totals()["requests"]
    elapsed = time.perf_counter() - started
    return elapsed, count, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--phase":
        elapsed, count, rss = phase(sys.argv[2], Path(sys.argv[3]))
        print(json.dumps({"elapsed": elapsed, "count": count, "rss_kb": rss}))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "spool").mkdir()
        write_spool(folder / "spool", n)
        figures = {}
        for which in ("baseline", "plan"):
            out = subprocess.run(
                [sys.executable, __file__, "--phase", which, str(folder)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            figures[which] = json.loads(out.strip().splitlines()[-1])
    base, plan = figures["baseline"], figures["plan"]
    assert base["count"] == plan["count"] == n, figures
    base_rate, plan_rate = n / base["elapsed"], n / plan["elapsed"]
    print(f"requests:            {n:,}")
    print(f"baseline (scan):     {base_rate:,.0f} req/s, peak RSS {base['rss_kb'] / 1024:.0f} MiB")
    print(f"plan (scan+plan):    {plan_rate:,.0f} req/s, peak RSS {plan['rss_kb'] / 1024:.0f} MiB")
    print(
        f"plan / baseline:     {plan_rate / base_rate:.2f}x speed, "
        f"{plan['rss_kb'] / base['rss_kb']:.2f}x memory"
    )


if __name__ == "__main__":
    main()

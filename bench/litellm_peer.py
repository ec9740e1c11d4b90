"""planner against the peer a user would write with litellm: count and price every request.

Usage::

    python -m bench litellm            # 5,000 requests per corpus, 3 alternating rounds
    python -m bench litellm 20000      # N requests per corpus
    python -m bench litellm 5000 --rounds 5

litellm is not a dependency of planner: install it with ``pip install -e '.[bench]'``. It runs
offline here (``LITELLM_LOCAL_MODEL_COST_MAP=True``, its tiktoken files from
``TIKTOKEN_CACHE_DIR`` through ``CUSTOM_TIKTOKEN_CACHE_DIR``, or the ones it bundles).

Two corpora from ``bench/corpus.py``'s generator (fixed seed), written as spool lines:

* chat  — OpenAI batch lines for ``gpt-4o-mini``: one of 24 system prompts, then 1-7 turns
  with long-tailed lengths (o200k_base);
* embed — simple lines of 4-60 words for ``text-embedding-3-small`` (cl100k_base).

Subjects, each round in fresh processes, alternately:

* litellm — the baseline: per line ``json.loads``, ``litellm.token_counter(model=...,
  messages=...)`` (``text=`` for embeddings) and ``litellm.cost_per_token(model=...,
  prompt_tokens=..., completion_tokens=max_tokens)``; only the loop is timed (litellm imported
  and its encodings loaded before);
* assess  — planner's own per-request path, what ``planner plan`` does per line: decode and
  validate it into a ``Request`` (``sources/lines.parse_line``), then ``Planner.assess``
  (estimate, price in every lane, decide) from ``runtime.wiring.build_planner``; only the loop
  is timed, like litellm's, with the garbage collector set as every planner command sets it
  (``cli.tune_gc``; at Python's default the loop spent a quarter of its time collecting);
* plan    — ``planner plan --json`` on the spool, the whole process timed (start-up, reading
  the files, packing and the report included), against the same litellm loop.

Figures: ``litellm seconds / subject seconds`` in the same round (2.0x = planner twice as fast),
median over the rounds; for the two loops (one thread each) also in CPU seconds
(``time.process_time``), which other load on a shared machine disturbs far less than wall time.
The token counts of the first ``SAMPLE`` requests are compared between litellm, planner and a
bare tiktoken count by the OpenAI Cookbook rule; a difference is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.corpus import CHAT_ENCODING, EMBED_ENCODING, Corpus
from bench.run import CONFIG, timed

CORPORA = ("chat", "embed")
SAMPLE = 500  # requests whose counts are compared one by one
INSTALL = "litellm is not installed: pip install -e '.[bench]' (or: pip install litellm)"


def write_corpus(folder: Path, kind: str, n: int, seed: int) -> Path:
    """``n`` lines of ``kind`` in ``folder/kind/spool/part-0.jsonl``, with a planner.yaml."""
    corpus = Corpus(seed)
    base = folder / kind
    spool = base / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    ignored: list[tuple[str, str]] = []
    make = corpus.chat if kind == "chat" else corpus.embedding
    with (spool / "part-0.jsonl").open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps(make(i, ignored), ensure_ascii=False) + "\n")
            ignored.clear()
    config = base / "planner.yaml"
    config.write_text(CONFIG.format(state=base / "state", spool=spool, results=base / "results"))
    return config


def lines_of(config: Path) -> list[str]:
    with (config.parent / "spool" / "part-0.jsonl").open(encoding="utf-8") as f:
        return f.read().splitlines()


def child_env() -> dict[str, str]:
    """litellm offline: its bundled cost map, and tiktoken files from where planner's are."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    if "TIKTOKEN_CACHE_DIR" in env:
        env.setdefault("CUSTOM_TIKTOKEN_CACHE_DIR", env["TIKTOKEN_CACHE_DIR"])
    return env


def run_litellm(config: Path) -> dict[str, object]:
    """In the child: time litellm's count + price of every line."""
    try:
        import litellm
    except ImportError:
        raise SystemExit(INSTALL) from None
    lines = lines_of(config)
    counter, pricer = litellm.token_counter, litellm.cost_per_token
    counter(model="gpt-4o-mini", messages=[{"role": "user", "content": "warm up"}])
    counter(model="text-embedding-3-small", text="warm up")
    counts: list[int] = []
    cost = 0.0
    started, cpu = time.perf_counter(), time.process_time()
    for raw in lines:
        obj = json.loads(raw)
        if "body" in obj:  # an OpenAI batch line
            body = obj["body"]
            model = body["model"]
            n = counter(model=model, messages=body["messages"])
            output = body.get("max_tokens", 0)
        else:  # a simple embedding line
            model = obj["model"]
            n = counter(model=model, text=obj["text"])
            output = 0
        prompt_cost, completion_cost = pricer(
            model=model, prompt_tokens=n, completion_tokens=output
        )
        cost += prompt_cost + completion_cost
        counts.append(n)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu": cpu,
        "counts": counts[:SAMPLE],
        "tokens": sum(counts),
        "cost": cost,
    }


def run_assess(config: Path) -> dict[str, object]:
    """In the child: time planner's decode + validate + assess of every line."""
    from planner.cli import tune_gc
    from planner.config import load_config
    from planner.core.model import Request
    from planner.runtime.wiring import build_planner
    from planner.sources.formats import Defaults
    from planner.sources.lines import parse_line

    cfg = load_config(config)
    planner = build_planner(cfg)
    source = cfg.sources["spool"]
    settings = Defaults(
        source="spool",
        family_of=planner.catalog.family_of,
        facts_of=planner.catalog.get,
        default_model=source.default_model,
        default_embedding_model=getattr(source, "default_embedding_model", None),
    )
    tune_gc()  # as the planner command runs (the litellm loop runs as a user's script would)
    lines = lines_of(config)
    for encoding in (CHAT_ENCODING, EMBED_ENCODING):  # load both BPE files before the clock
        planner.counter.count("warm up", encoding)
    now = datetime.now(UTC)
    counts: list[int] = []
    cost = 0.0
    started, cpu = time.perf_counter(), time.process_time()
    for number, raw in enumerate(lines, 1):
        request = parse_line(raw, file="part-0.jsonl", line=number, now=now, settings=settings)
        if not isinstance(request, Request):
            raise SystemExit(f"line {number} refused: {request}")
        assessed = planner.assess(request, now)
        counts.append(assessed.estimate.input_tokens)
        cost += float(assessed.costs.interactive or 0)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu": cpu,
        "counts": counts[:SAMPLE],
        "tokens": sum(counts),
        "cost": cost,
    }


def tiktoken_counts(config: Path) -> list[int]:
    """The OpenAI Cookbook count of the first ``SAMPLE`` lines with bare tiktoken."""
    import tiktoken

    chat = tiktoken.get_encoding(CHAT_ENCODING).encode_ordinary
    embed = tiktoken.get_encoding(EMBED_ENCODING).encode_ordinary
    counts = []
    for raw in lines_of(config)[:SAMPLE]:
        obj = json.loads(raw)
        if "body" in obj:
            messages = obj["body"]["messages"]
            n = 3 + sum(3 + sum(len(chat(v)) for v in m.values()) for m in messages)
        else:
            n = len(embed(obj["text"]))
        counts.append(n)
    return counts


def child(which: str, config: Path) -> dict[str, object]:
    argv = [sys.executable, "-m", "bench.litellm_peer", "--child", which, str(config)]
    got = timed(argv, Path.cwd(), env=child_env())
    figures: dict[str, object] = json.loads(got.stdout)
    figures["rss_mib"] = got.rss_mib
    figures["wall"] = got.seconds
    return figures


def check_counts(
    kind: str, config: Path, litellm: dict[str, object], assess: dict[str, object]
) -> dict[str, int]:
    """Compare the sampled counts: planner must equal bare tiktoken; litellm is reported."""
    bare = tiktoken_counts(config)
    theirs, ours = litellm["counts"], assess["counts"]
    assert isinstance(theirs, list) and isinstance(ours, list)
    planner_off = [i for i, (a, b) in enumerate(zip(ours, bare, strict=True)) if a != b]
    litellm_off = [i for i, (a, b) in enumerate(zip(theirs, bare, strict=True)) if a != b]
    for who, counts, off in (("planner", ours, planner_off), ("litellm", theirs, litellm_off)):
        if off:
            i = off[0]
            extra = sum(counts[i] - bare[i] for i in off)
            print(
                f"{kind}: {who} differs from bare tiktoken on {len(off)} of {len(bare)} sampled "
                f"requests, {extra:+,} tokens in all (first: line {i + 1}: {who} {counts[i]}, "
                f"tiktoken {bare[i]})"
            )
        else:
            print(f"{kind}: {who} equals bare tiktoken on all {len(bare)} sampled requests")
    print(
        f"{kind}: totals litellm {litellm['tokens']:,} planner {assess['tokens']:,} input tokens; "
        f"interactive cost litellm ${litellm['cost']:.4f} planner ${assess['cost']:.4f}"
    )
    return {"sampled": len(bare), "planner_off": len(planner_off), "litellm_off": len(litellm_off)}


def measure(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    configs = {kind: write_corpus(folder, kind, args.requests, args.seed) for kind in CORPORA}
    planner = [sys.executable, "-m", "planner"]
    rounds: list[dict[str, dict[str, float]]] = []
    summary: dict[str, object] = {"requests": args.requests, "rounds": rounds}
    for r in range(args.rounds):
        figures: dict[str, dict[str, float]] = {}
        for kind, config in configs.items():
            peer = child("litellm", config)
            assess = child("assess", config)
            plan = timed([*planner, "plan", "--json", "-c", str(config)], folder)
            planned = json.loads(plan.stdout)["totals"]["requests"]
            if planned != args.requests:
                raise SystemExit(f"plan saw {planned} requests of {args.requests}")
            figures[kind] = {
                "litellm": float(peer["seconds"]),  # type: ignore[arg-type]
                "litellm_process": float(peer["wall"]),  # type: ignore[arg-type]
                "assess": float(assess["seconds"]),  # type: ignore[arg-type]
                "litellm_cpu": float(peer["cpu"]),  # type: ignore[arg-type]
                "assess_cpu": float(assess["cpu"]),  # type: ignore[arg-type]
                "plan": plan.seconds,
                "litellm_rss_mib": float(peer["rss_mib"]),  # type: ignore[arg-type]
                "plan_rss_mib": plan.rss_mib,
            }
            if r == 0:
                summary[f"{kind}_counts"] = check_counts(kind, config, peer, assess)
        rounds.append(figures)
        print(
            f"round {r + 1}: "
            + "  ".join(
                f"{kind}: litellm loop {f['litellm']:.2f}s (process {f['litellm_process']:.2f}s)"
                f", assess {f['assess']:.2f}s ({f['litellm'] / f['assess']:.2f}x)"
                f", plan {f['plan']:.2f}s ({f['litellm'] / f['plan']:.2f}x)"
                for kind, f in figures.items()
            ),
            flush=True,
        )
    print(f"{args.requests:,} requests per corpus; speed = litellm seconds / planner seconds")
    for kind in CORPORA:
        for name, base, label in (
            ("assess", "litellm", "assess loop vs litellm loop"),
            ("assess_cpu", "litellm_cpu", "the same in CPU time"),
            ("plan", "litellm", "plan --json process vs litellm loop"),
            ("plan", "litellm_process", "plan --json process vs litellm process"),
        ):
            ratios = [r[kind][base] / r[kind][name] for r in rounds]
            summary[f"{kind}: {label}"] = statistics.median(ratios)
            print(
                f"{kind:>5}: {label:<38} median {statistics.median(ratios):5.2f}x "
                f"(rounds {', '.join(f'{x:.2f}' for x in ratios)})"
            )
    return summary


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench litellm", description=(__doc__ or "").split("\n\n")[0]
    )
    ap.add_argument("requests", type=int, nargs="?", default=5_000, help="per corpus (5000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--seed", type=int, default=15, help="corpus seed (default 15)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        run = run_litellm if argv[1] == "litellm" else run_assess
        print(json.dumps(run(Path(argv[2]))))
        return
    args = parse(argv)
    if importlib.util.find_spec("litellm") is None:
        raise SystemExit(INSTALL)
    with tempfile.TemporaryDirectory() as tmp:
        summary = measure(args, Path(tmp))
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""The benchmark runner: planner against the tokenizer floor, every figure a ratio.

    python -m bench --help
    python -m bench --requests 20000 --rounds 3          # the issue's check
    python -m bench --requests 100000 --only plan        # plan alone, larger
    python -m bench spool|store|interactive [ARGS]       # the older focused benchmarks
    python -m bench litellm|pg-ingest|idle [ARGS]        # against peers (see their modules)

It writes a mixed corpus (``bench/corpus.py``, fixed seed) into a temporary folder, then runs,
round after round and alternately, each in its own process:

* floor — a plain ``tiktoken`` ``encode_ordinary`` loop over exactly the texts planner must
  tokenize (chat message contents with o200k_base, embedding inputs with cl100k_base; Gemini
  needs none); only the loop is timed (texts read and encodings loaded before). The same child
  also times that loop with toktok, which planner counts with (``planner/fast_bpe.py``), and
  checks it counts the same tokens: printed for the record, the ratios stay against tiktoken;
* plan — ``planner plan --json`` on the spool, the whole process timed (start-up included,
  from planner's bytecode, which the runner writes first as an installed package has it);
* run — ``planner run --once --sandbox`` on a fresh copy of the spool and a fresh SQLite
  store, the whole process timed (the daemon's path: ingest, plan, write and submit batches).

A subject's speed is ``floor seconds / subject seconds`` in the same round (1.0x = as fast as
the bare tokenizer); the median over the rounds is printed, with every round's figure, the
peak RSS of each process (``wait4``'s ``ru_maxrss``, which is a child's where a child was
larger: the emulator's under ``run --once --sandbox`` at a million requests), its own peak
(``VmHWM``) and the peak RSS and PSS of its whole process tree (itself and any workers it
starts, summed, sampled from ``/proc`` every 50 ms by ``bench/tree_memory.py``). Timings on a
shared machine are noisy: that is why every figure is a ratio against a baseline measured
moments before.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from bench import corpus
from bench.tree_memory import TreeSampler

SUBJECTS = ("plan", "run")
FOCUSED = {
    "spool": "bench.spool",
    "store": "bench.store_path",
    "interactive": "bench.interactive",
    "litellm": "bench.litellm_peer",
    "pg-ingest": "bench.pg_ingest",
    "idle": "bench.idle",
    "scrape": "bench.scrape",
}

CONFIG = """
state_dir: {state}
providers:
  openai: {{kind: openai, models: ["gpt-*", "text-embedding-*"]}}
  gemini: {{kind: gemini, models: ["gemini-*"]}}
limits: {{openai: {{max_enqueued_tokens: 100000000000}}}}
sources:
  spool:
    kind: jsonl_dir
    path: {spool}
    settle: 0s
    sink: results
    default_model: gpt-4o-mini
    default_embedding_model: text-embedding-3-small
sinks: {{results: {{kind: jsonl_dir, path: {results}}}}}
policies: {{default: {{default_deadline: 48h, min_savings_usd: "0"}}}}
metrics: {{enabled: false}}
"""


def floor(texts_file: Path) -> dict[str, float]:
    """In the child: read the texts, load the encodings, then time the bare loop."""
    import tiktoken

    by_encoding: dict[str, list[str]] = {}
    with texts_file.open(encoding="utf-8") as f:
        for raw in f:
            encoding, text = json.loads(raw)
            by_encoding.setdefault(encoding, []).append(text)
    encoders = {name: tiktoken.get_encoding(name).encode_ordinary for name in by_encoding}
    started = time.perf_counter()
    tokens = 0
    for name, texts in by_encoding.items():
        encode = encoders[name]
        for text in texts:
            tokens += len(encode(text))
    seconds = time.perf_counter() - started
    figures = {"seconds": seconds, "tokens": tokens, "texts": sum(map(len, by_encoding.values()))}
    figures["toktok_seconds"] = _toktok_loop(by_encoding, tokens)
    return figures


def _toktok_loop(by_encoding: dict[str, list[str]], tokens: int) -> float:
    """The same loop with the tokenizer planner counts with (``planner/fast_bpe.py``), for
    the record: where the floor's tokenizing went. Its total must be the floor's."""
    from toktok import _toktok

    counters = {name: _toktok.Tokenizer(name, "").count for name in by_encoding}
    started = time.perf_counter()
    counted = 0
    for name, texts in by_encoding.items():
        count = counters[name]
        for text in texts:
            counted += count(text)
    seconds = time.perf_counter() - started
    assert counted == tokens, (counted, tokens)
    return seconds


class Timed(NamedTuple):
    seconds: float  # wall-clock
    rss_mib: float  # ``wait4``'s ``ru_maxrss``: its own peak or a waited-for child's, the larger
    own_mib: float  # the process's own peak RSS (``VmHWM``, read while it runs)
    stdout: str
    tree_rss_mib: float  # peak of the summed RSS of the process and its descendants (sampled)
    tree_pss_mib: float  # the same with PSS: shared pages split between the processes
    processes: int  # the most processes seen at once in the tree


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Timed:
    """Run ``argv``; its wall seconds, peak RSS in MiB (its own and its tree's) and stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, env=env)
        with TreeSampler(child.pid) as tree:
            _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if child.returncode not in (0,):
        raise SystemExit(f"{' '.join(argv)} exited {child.returncode}:\n{stderr[-3000:]}")
    return Timed(
        seconds,
        usage.ru_maxrss / 1024,
        tree.own_hwm_mib,
        stdout,
        tree.peak_rss_mib,
        tree.peak_pss_mib,
        tree.most_processes,
    )


def write_config(folder: Path, name: str) -> Path:
    state = folder / name
    state.mkdir(exist_ok=True)
    spool = folder / "spool" if name == "plan" else state / "spool"
    if name != "plan":
        shutil.copytree(folder / "spool", spool)
    path = state / "planner.yaml"
    text = CONFIG.format(state=state / "state", spool=spool, results=state / "results")
    path.write_text(text)
    return path


def subject(name: str, folder: Path, round_no: int) -> Timed:
    planner = [sys.executable, "-m", "planner"]
    if name == "plan":
        config = folder / "plan" / "planner.yaml"
        return timed([*planner, "plan", "--json", "-c", str(config)], folder)
    config = write_config(folder, f"run-{round_no}")
    try:
        return timed([*planner, "run", "--once", "--sandbox", "-c", str(config)], folder)
    finally:
        shutil.rmtree(config.parent)


def check_plan(stdout: str, requests: int) -> None:
    totals = json.loads(stdout)["totals"]
    if totals["requests"] != requests:
        raise SystemExit(f"plan saw {totals['requests']} requests of {requests}: {stdout[:500]}")


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Focused benchmarks: python -m bench "
        + "|".join(FOCUSED)
        + " [ARGS] (each has --help; see their docstrings in bench/).",
    )
    ap.add_argument("--requests", type=int, default=20_000, help="corpus size (default 20000)")
    ap.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds (default 3; 0: corpus only)"
    )
    ap.add_argument("--seed", type=int, default=15, help="corpus seed (default 15)")
    ap.add_argument(
        "--foreign",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of texts in other scripts, from the OS's locale sources (default 0)",
    )
    ap.add_argument(
        "--only", choices=SUBJECTS, action="append", help="measure only this subject (repeatable)"
    )
    ap.add_argument("--keep", type=Path, help="write the corpus here and keep it")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    return ap.parse_args(argv)


def compile_planner() -> None:
    """planner's bytecode, written as pip writes it for an installed package (and as ``make
    venv`` does for this editable one): where ``PYTHONDONTWRITEBYTECODE`` is set and it was
    never written, every ``planner`` process would compile all of planner first (~0.4 s)."""
    spec = importlib.util.find_spec("planner")
    folders = spec.submodule_search_locations if spec is not None else None
    if not folders or not compileall.compile_dir(folders[0], quiet=1):
        raise SystemExit("could not compile planner's bytecode")


def measure(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    compile_planner()
    started = time.perf_counter()
    if not 0 <= args.foreign <= 1:
        raise SystemExit(f"--foreign is a share from 0 to 1, not {args.foreign}")
    texts = corpus.write(folder, args.requests, args.seed, foreign=args.foreign)
    print(
        f"corpus: {args.requests:,} requests, seed {args.seed}, "
        + (f"{args.foreign:.0%} of texts in other scripts, " if args.foreign else "")
        + f"{sum(p.stat().st_size for p in (folder / 'spool').iterdir()) / 2**20:,.1f} MiB, "
        f"written in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    write_config(folder, "plan")
    subjects = args.only or list(SUBJECTS)
    floor_cmd = [sys.executable, "-m", "bench.run", "--floor", str(texts)]
    rounds: list[dict[str, dict[str, float]]] = []
    for r in range(args.rounds):
        figures: dict[str, dict[str, float]] = {}
        base = timed(floor_cmd, Path.cwd())
        f = json.loads(base.stdout)
        figures["floor"] = {
            "seconds": f["seconds"],
            "rss_mib": base.rss_mib,
            "wall": base.seconds,
            "toktok_seconds": f["toktok_seconds"],
        }
        for name in subjects:
            got = subject(name, folder, r)
            if name == "plan":
                check_plan(got.stdout, args.requests)
            figures[name] = {
                "seconds": got.seconds,
                "rss_mib": got.rss_mib,
                "own_mib": got.own_mib,
                "tree_rss_mib": got.tree_rss_mib,
                "tree_pss_mib": got.tree_pss_mib,
                "processes": got.processes,
                "ratio": f["seconds"] / got.seconds,
            }
        rounds.append(figures)
        shown = "  ".join(
            f"{n} {figures[n]['seconds']:.2f}s ({figures[n]['ratio']:.2f}x, "
            f"{figures[n]['rss_mib']:.0f} MiB, own {figures[n]['own_mib']:.0f}; "
            f"tree of {figures[n]['processes']:.0f}: "
            f"RSS {figures[n]['tree_rss_mib']:.0f}, PSS {figures[n]['tree_pss_mib']:.0f} MiB)"
            for n in subjects
        )
        print(
            f"round {r + 1}: floor {f['seconds']:.2f}s ({f['texts']:,} texts, "
            f"{f['tokens']:,} tokens, {figures['floor']['rss_mib']:.0f} MiB; the same loop with "
            f"toktok {f['toktok_seconds']:.2f}s)  {shown}",
            flush=True,
        )
    summary: dict[str, object] = {
        "requests": args.requests,
        "foreign": args.foreign,
        "rounds": rounds,
    }
    for name in subjects if rounds else ():  # --rounds 0 --keep DIR: only write the corpus
        ratio = statistics.median(r[name]["ratio"] for r in rounds)
        rss = max(r[name]["rss_mib"] for r in rounds)
        own = max(r[name]["own_mib"] for r in rounds)
        tree_rss = max(r[name]["tree_rss_mib"] for r in rounds)
        tree_pss = max(r[name]["tree_pss_mib"] for r in rounds)
        summary[name] = {
            "median_ratio": ratio,
            "peak_rss_mib": rss,
            "own_peak_mib": own,
            "tree_peak_rss_mib": tree_rss,
            "tree_peak_pss_mib": tree_pss,
        }
        print(
            f"{name:>5}: median {ratio:.2f}x the floor, peak RSS {rss:.0f} MiB (ru_maxrss: its "
            f"own or a child's), its own {own:.0f} MiB (VmHWM); process tree, sampled every "
            f"50 ms: RSS {tree_rss:.0f} MiB, PSS {tree_pss:.0f} MiB"
        )
    return summary


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--floor"]:
        print(json.dumps(floor(Path(argv[1]))))
        return
    if argv[:1] and argv[0] in FOCUSED:
        module = FOCUSED[argv[0]]
        raise SystemExit(subprocess.call([sys.executable, "-m", module, *argv[1:]]))
    args = parse(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        summary = measure(args, args.keep)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            summary = measure(args, Path(tmp))
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""CPU of an idle daemon, as a share of one core, against a ``sleep`` process.

Usage::

    python -m bench idle               # 60 s measured after a 20 s warm-up
    python -m bench idle 300 --warmup 30 --scrape 0
    python -m bench idle --store-rows 1000000   # a store of a million requests and bills

It writes a configuration into a temporary folder (an empty spool, SQLite under the folder,
metrics enabled on a free loopback port, every schedule at its default), starts ``planner run
--sandbox`` (the daemon, with the emulator in-process), waits until ``/metrics`` answers, lets
the first pass of every stage run (``--warmup``), then reads the CPU time of the daemon and
all its descendants from ``/proc/<pid>/stat`` (``utime + stime``, plus ``cutime + cstime`` of
children it waited for) at the start and the end of the window. A ``sleep`` process started
beside it is read over the same window: the baseline. By default ``/metrics`` is scraped every
15 s during the window, as Prometheus would (``--scrape 0``: never).

It prints the CPU of each as a percentage of one core over the window (the goal: the daemon
under 0.5%), and the daemon's log lines written during the window.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.tree_memory import PROC, TICKS, cpu_ticks, descendants, parents

GOAL_PERCENT = 0.5

CONFIG = """
state_dir: {state}
providers:
  openai: {{kind: openai}}
  gemini: {{kind: gemini}}
sources:
  spool: {{kind: jsonl_dir, path: {spool}, sink: results}}
sinks: {{results: {{kind: jsonl_dir, path: {results}}}}}
metrics: {{enabled: true, listen: "127.0.0.1:{port}"}}
"""


def tree_ticks(root: int) -> dict[int, int]:
    """CPU ticks of ``root`` and each live descendant, each with the children it waited for."""
    ticks = {}
    for pid in descendants(root, parents()):
        try:
            own, waited = cpu_ticks((PROC / str(pid) / "stat").read_text())
        except OSError:  # ended meanwhile
            continue
        ticks[pid] = own + waited
    return ticks


def spent(before: dict[int, int], after: dict[int, int]) -> dict[int, int]:
    """Ticks each process used between two readings (one born meanwhile: all of its own)."""
    return {pid: ticks - before.get(pid, 0) for pid, ticks in after.items()}


def percent(ticks: int, seconds: float) -> float:
    """Ticks over ``seconds`` of wall clock as a percentage of one core."""
    return 100.0 * ticks / TICKS / seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            reply.read()
            return bool(reply.status == 200)
    except OSError:
        return False


def _fill_store(config: Path, rows: int) -> None:
    """The daemon's store made large before it starts: ``rows`` finished requests and as many
    ledger rows (``bench/scrape.py``), six days old, within the default retention."""
    from bench.scrape import seed
    from planner.config import load_config
    from planner.runtime.wiring import build_context

    started = time.monotonic()
    ctx = build_context(load_config(config), sandbox_url="http://127.0.0.1:9")
    seed(ctx.session_factory, rows)
    print(f"store: {rows:,} requests and ledger rows (made in {time.monotonic() - started:.0f} s)")


def measure(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    port = free_port()
    for name in ("spool", "results"):
        (folder / name).mkdir()
    config = folder / "planner.yaml"
    config.write_text(
        CONFIG.format(
            state=folder / "state", spool=folder / "spool", results=folder / "results", port=port
        )
    )
    if args.store_rows:
        _fill_store(config, args.store_rows)
    log = (folder / "daemon.log").open("w+b")
    argv = [sys.executable, "-m", "planner", "run", "--sandbox", "-c", str(config)]
    daemon = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    sleeper = subprocess.Popen(["sleep", str(int(args.seconds + args.warmup + 120))])
    try:
        deadline = time.monotonic() + 60
        while not scrape(port):
            if daemon.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"the daemon did not serve /metrics:\n{log.read().decode()}")
            time.sleep(0.2)
        time.sleep(args.warmup)
        log_at = log.seek(0, os.SEEK_END)
        started = time.monotonic()
        daemon_before, sleep_before = tree_ticks(daemon.pid), tree_ticks(sleeper.pid)
        scrapes = 0
        while (left := started + args.seconds - time.monotonic()) > 0:
            time.sleep(min(left, args.scrape or left))
            if args.scrape and time.monotonic() < started + args.seconds and scrape(port):
                scrapes += 1
        by_process = spent(daemon_before, tree_ticks(daemon.pid))
        sleep_ticks = sum(spent(sleep_before, tree_ticks(sleeper.pid)).values())
        seconds = time.monotonic() - started
        log_end = log.seek(0, os.SEEK_END)
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited {daemon.returncode} during the window")
    finally:
        sleeper.kill()
        sleeper.wait()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    log.seek(log_at)
    lines = log.read(log_end - log_at).decode(errors="replace").splitlines()
    log.close()
    events: dict[str, int] = {}
    for line in lines:
        try:
            event = str(json.loads(line).get("event", "?"))
        except (ValueError, AttributeError):
            event = "(not JSON)"
        events[event] = events.get(event, 0) + 1
    daemon_ticks = sum(by_process.values())
    own_ticks = by_process.get(daemon.pid, 0)
    children = percent(daemon_ticks - own_ticks, seconds)
    figures = {
        "seconds": seconds,
        "daemon_percent": percent(daemon_ticks, seconds),
        "main_process_percent": percent(own_ticks, seconds),
        "children_percent": children,
        "processes": len(by_process),
        "sleep_percent": percent(sleep_ticks, seconds),
        "daemon_ticks": daemon_ticks,
        "scrapes": scrapes,
        "log_lines": len(lines),
        "log_events": events,
    }
    verdict = "met" if figures["daemon_percent"] < GOAL_PERCENT else "NOT met"
    print(
        f"idle daemon over {seconds:.0f}s (after {args.warmup:.0f}s of warm-up; "
        f"{scrapes} scrapes of /metrics): {figures['daemon_percent']:.3f}% of one core "
        f"({daemon_ticks} ticks of 1/{TICKS} s, {len(by_process)} processes; the daemon's own "
        f"{figures['main_process_percent']:.3f}%, its children {children:.3f}%); "
        f"sleep baseline {figures['sleep_percent']:.3f}%; goal < {GOAL_PERCENT}%: {verdict}"
    )
    print(f"log lines in the window: {len(lines)} {events}")
    return figures


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench idle", description=(__doc__ or "").split("\n\n")[0]
    )
    ap.add_argument("seconds", type=float, nargs="?", default=60.0, help="window (60)")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds before it (20)")
    ap.add_argument(
        "--scrape", type=float, default=15.0, help="scrape /metrics every S s (15; 0 = never)"
    )
    ap.add_argument(
        "--store-rows",
        type=int,
        default=0,
        help="start on a store of N finished requests and N ledger rows (0: empty)",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(args, Path(tmp))
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Spool scan benchmark: throughput and peak memory of ``JsonlDirSource.scan`` as ratios.

Usage::

    python -m bench spool                 # two sizes, 50MB and 200MB (quick)
    python -m bench spool 1GB             # one size; the full run
    python -m bench spool 100MB 1GB       # any sizes, in MB or GB

For each size it writes a spool file of mixed lines (OpenAI, Gemini and simple formats, about
a third each, every key unique) into a temporary folder, then measures, each in a fresh
subprocess so peak RSS (``getrusage``) belongs to one phase only:

* baseline — read the same file line by line and ``json.loads`` each line, nothing else;
* scan     — ``JsonlDirSource.scan`` over the folder (decode, parse, validate, build
  ``Request`` values, refuse duplicate keys).

Both phases import the same modules first, so the RSS ratio compares the work, not the
imports. The goal: scan peak RSS flat across sizes (streaming; the duplicate-key set spills
to disk past ``memory_keys``), and scan throughput within a small factor of the baseline.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from planner.core.model import ProviderKind, Request
from planner.sources.jsonl_dir import JsonlDirSource

MB = 1024 * 1024
FAMILIES = {
    "gpt-4o-mini": ProviderKind.OPENAI,
    "text-embedding-3-small": ProviderKind.OPENAI,
    "gemini-3.5-flash-lite": ProviderKind.GEMINI,
    "gemini-embedding-001": ProviderKind.GEMINI,
}
PROMPT = "Summarise the following paragraph in two sentences for a busy reader: " + "lorem " * 12


def parse_size(text: str) -> int:
    text = text.strip().upper()
    for unit, factor in (("GB", 1024 * MB), ("MB", MB)):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def lines_for(i: int) -> str:
    kind = i % 3
    if kind == 0:
        return json.dumps(
            {
                "custom_id": f"oa-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": PROMPT}],
                    "max_tokens": 200,
                    "metadata": {"deadline": "12h"},
                },
            }
        )
    if kind == 1:
        return json.dumps(
            {
                "key": f"gm-{i}",
                "model": "models/gemini-3.5-flash-lite",
                "request": {
                    "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
                    "generationConfig": {"maxOutputTokens": 200},
                },
            }
        )
    return json.dumps({"id": f"sm-{i}", "prompt": PROMPT, "deadline": "2026-12-31T00:00:00Z"})


def generate(path: Path, size: int) -> int:
    written = count = 0
    with path.open("w", encoding="utf-8") as out:
        while written < size:
            chunk = "".join(lines_for(count + j) + "\n" for j in range(10_000))
            out.write(chunk)
            written += len(chunk)
            count += 10_000
    return count


def phase(name: str, folder: Path) -> dict[str, float]:
    """Run in a fresh interpreter: one phase, then report its own numbers as JSON."""
    started = time.perf_counter()
    lines = 0
    if name == "baseline":
        with (folder / "spool.jsonl").open("rb") as f:
            for raw in f:
                json.loads(raw)
                lines += 1
    else:
        source = JsonlDirSource(
            "bench",
            folder,
            family_of=FAMILIES.get,
            default_model="gpt-4o-mini",
            default_embedding_model="text-embedding-3-small",
            default_deadline=None,
            settle=timedelta(0),
        )
        for item in source.scan(datetime.now(UTC)):
            if not isinstance(item, Request):
                raise SystemExit(f"unexpected error line: {item}")
            lines += 1
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"seconds": seconds, "lines": lines, "peak_mb": peak_kb / 1024}


def measure(name: str, folder: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.spool", "--phase", name, str(folder)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main(argv: list[str]) -> None:
    if argv[:1] == ["--phase"]:
        print(json.dumps(phase(argv[1], Path(argv[2]))))
        return
    sizes = [parse_size(a) for a in argv] or [50 * MB, 200 * MB]
    print(
        f"{'size':>8} {'lines':>9} {'base MB/s':>9} {'scan MB/s':>9} {'speed':>6}"
        f" {'base RSS':>9} {'scan RSS':>9} {'RSS':>5}"
    )
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            generate(folder / "spool.jsonl", size)
            actual = (folder / "spool.jsonl").stat().st_size
            base = measure("baseline", folder)
            scan = measure("scan", folder)
        if scan["lines"] != base["lines"]:
            raise SystemExit(f"scan saw {scan['lines']} lines, baseline {base['lines']}")
        base_rate = actual / MB / base["seconds"]
        scan_rate = actual / MB / scan["seconds"]
        print(
            f"{actual / MB:7.0f}M {int(base['lines']):9d} {base_rate:9.1f} {scan_rate:9.1f}"
            f" {scan_rate / base_rate:6.2f} {base['peak_mb']:8.1f}M {scan['peak_mb']:8.1f}M"
            f" {scan['peak_mb'] / base['peak_mb']:5.2f}"
        )
    print("speed = scan throughput / baseline; RSS = scan peak RSS / baseline peak RSS")


if __name__ == "__main__":
    main(sys.argv[1:])

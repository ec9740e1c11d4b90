"""Retired models, as a user meets them: `validate`, `plan` and `run --once` each name a retired
model once (however many requests or settings use it), and the shipped demo uses current ones.

gemini-2.5-flash retired on 2026-12-01 (the catalog: then routed to gemini-3.5-flash-lite at its
rates); these tests run on or after that day.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

RETIRED = "gemini-2.5-flash"
NOTICE = (
    f"{RETIRED} retired on 2026-12-01; the provider routes it to gemini-3.5-flash-lite, "
    "billed at that model's rates"
)


def planner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planner", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def _config(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = [
        {"key": f"g-{i}", "model": RETIRED, "request": {"contents": [{"parts": [{"text": "hi"}]}]}}
        for i in range(3)
    ]
    lines.append({"id": "s-1", "prompt": "hello"})  # the source's default model: the same one
    (spool / "work.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    doc: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "providers": {"gemini": {"kind": "gemini"}},
        "sources": {
            name: {
                "kind": "jsonl_dir",
                "path": str(spool if name == "spool" else tmp_path / name),
                "sink": "out",
                "settle": "0s",
                "default_model": RETIRED,
            }
            for name in ("spool", "other")
        },
        "sinks": {"out": {"kind": "jsonl_dir", "path": str(tmp_path / "out")}},
        "policies": {"default": {"min_savings_usd": "0"}},
    }
    (tmp_path / "other").mkdir()
    path = tmp_path / "planner.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_validate_warns_once_per_retired_model(tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = planner("validate", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(NOTICE) == 1, done.stderr
    assert done.stdout.strip() == f"{config}: ok"


def test_plan_warns_once_per_retired_model(tmp_path: Path) -> None:
    config = _config(tmp_path)
    text = planner("plan", "-c", str(config))
    assert text.returncode == 0, text.stderr
    assert (text.stdout + text.stderr).count(NOTICE) == 1, text.stdout
    as_json = planner("plan", "-c", str(config), "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["retirements"] == [
        {"model": RETIRED, "kind": "retired", "message": NOTICE.removeprefix(RETIRED + " ")}
    ]


def test_run_once_warns_once_per_pass(tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = planner("run", "--once", "--sandbox", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(NOTICE.removeprefix(RETIRED)) == 1, done.stderr


def test_the_demo_uses_no_retired_model(tmp_path: Path) -> None:
    """`make demo` plans the example configuration over a copy of config/spool."""
    spool = tmp_path / "spool"
    shutil.copytree(REPO / "config" / "spool", spool)
    doc = yaml.safe_load((REPO / "config" / "planner.example.yaml").read_text())
    doc["state_dir"] = str(tmp_path / "state")
    doc["sources"]["spool"]["path"] = str(spool)
    doc["sinks"]["results"]["path"] = str(tmp_path / "results")
    config = tmp_path / "planner.yaml"
    config.write_text(yaml.safe_dump(doc))
    done = planner("plan", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["models"], "the demo spool is empty"
    assert [w for w in report["retirements"] if w["kind"] == "retired"] == []
    validated = planner("validate", "-c", str(REPO / "config" / "planner.example.yaml"))
    assert "retired on" not in validated.stderr

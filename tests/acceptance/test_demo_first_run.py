"""The first `make demo`: its plan shows the sample requests, and a plan that meets files still
inside `settle` says how many it left for later instead of showing `requests: 0` in silence."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.acceptance.test_cli_plan import run
from tests.conftest import REPO

LONG_AGO = 1_700_000_000  # a checkout made a while ago


def _seed_command() -> str:
    """The demo recipe's line that copies the sample spool, as the Makefile has it."""
    makefile = (REPO / "Makefile").read_text()
    (line,) = [x for x in makefile.splitlines() if "config/spool/*.jsonl state/spool" in x]
    return line.strip().lstrip("@")


def _checkout(tmp_path: Path) -> Path:
    (tmp_path / "config" / "spool").mkdir(parents=True)
    shutil.copy(REPO / "config" / "planner.example.yaml", tmp_path / "config")
    for sample in (REPO / "config" / "spool").glob("*.jsonl"):
        target = tmp_path / "config" / "spool" / sample.name
        shutil.copy(sample, target)
        os.utime(target, (LONG_AGO, LONG_AGO))
    config = tmp_path / "config" / "planner.example.yaml"
    text = config.read_text()
    # an hour of settle: a file written during the test stays inside it, whatever the timing
    config.write_text(text.replace("    interval: 30s\n", "    interval: 30s\n    settle: 1h\n"))
    assert "settle: 1h" in config.read_text()
    return config


def _plan(config: Path) -> dict[str, object]:
    done = run("plan", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    return report


def test_the_first_demo_plan_shows_the_sample_requests(tmp_path: Path) -> None:
    config = _checkout(tmp_path)
    subprocess.run(["sh", "-c", _seed_command()], cwd=tmp_path, check=True)
    report = _plan(config)
    assert report["settling"] == 0
    assert report["totals"]["requests"] == 12  # type: ignore[index]  # 13 lines, one bad
    assert report["quarantined"] == 1


def test_a_plan_says_how_many_files_are_still_settling(tmp_path: Path) -> None:
    config = _checkout(tmp_path)
    subprocess.run(["sh", "-c", "mkdir -p state/spool && cp config/spool/*.jsonl state/spool/"],
                   cwd=tmp_path, check=True)  # fmt: skip
    report = _plan(config)
    samples = len(list((REPO / "config" / "spool").glob("*.jsonl")))
    assert (report["settling"], report["totals"]["requests"]) == (samples, 0)  # type: ignore[index]
    shown = run("plan", "-c", str(config))
    assert shown.returncode == 0
    assert f"{samples} spool file(s) not read yet" in " ".join(shown.stdout.split())


def test_the_demo_run_summary_reads_as_text(tmp_path: Path) -> None:
    """`run --once` prints each stage's figures as words and numbers (no Python dict repr) and
    where the results went as a plain folder (no `config/../`)."""
    config = _checkout(tmp_path)
    subprocess.run(_seed_command(), shell=True, cwd=tmp_path, check=True)
    config.write_text(config.read_text().replace("    settle: 1h\n", "    settle: 0s\n"))
    done = run("run", "--once", "--sandbox", "-c", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (plan_line,) = [x for x in done.stdout.splitlines() if x.startswith("plan ")]
    assert "{" not in plan_line and "'" not in plan_line, plan_line
    assert "lanes (" in plan_line and "batch 11" in plan_line, plan_line
    results = str((tmp_path / "state" / "results").resolve())
    assert f"results: {results};" in done.stdout.replace("\n", ""), done.stdout

"""Long work shows progress at a terminal and nothing elsewhere: `planner run --once` in a
pseudo-terminal shows each step of the pass; with --json, or into a pipe, only the result."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import yaml
from rich.console import Console

from planner.cli_render import STEP_LABELS, stage_progress
from planner.runtime.runner import STEPS
from tests.conftest import REPO


def _config(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = [{"id": f"r-{i}", "model": "gpt-4o-mini", "prompt": f"Say {i}."} for i in range(5)]
    (spool / "work.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    doc = {
        "state_dir": str(tmp_path / "state"),
        "providers": {"openai": {"kind": "openai"}},
        "sources": {
            "spool": {"kind": "jsonl_dir", "path": str(spool), "sink": "out", "settle": "0s"}
        },
        "sinks": {"out": {"kind": "jsonl_dir", "path": str(tmp_path / "out")}},
    }
    path = tmp_path / "planner.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _in_a_terminal(*args: str) -> str:
    """Run planner with stdout and stderr on a pseudo-terminal; everything it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100", "LINES": "40"}
    child = subprocess.Popen(
        [sys.executable, "-m", "planner", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        cwd=REPO,
        env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert child.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_run_once_shows_each_step_at_a_terminal(tmp_path: Path) -> None:
    text = _in_a_terminal("run", "--once", "--sandbox", "-c", str(_config(tmp_path)))
    for step in STEPS:
        assert STEP_LABELS[step] in text, (step, text)
    assert "collect" in text  # the summary still follows


def test_run_once_is_quiet_under_json_and_in_a_pipe(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    text = _in_a_terminal("run", "--once", "--sandbox", "-c", config, "--json")
    assert not any(label in text for label in STEP_LABELS.values()), text
    piped = subprocess.run(
        [sys.executable, "-m", "planner", "run", "--once", "--sandbox", "-c", config],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ.copy(),
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert not any(label in piped.stdout + piped.stderr for label in STEP_LABELS.values())


def test_every_step_of_a_pass_has_a_label() -> None:
    assert set(STEPS) <= set(STEP_LABELS), set(STEPS) - set(STEP_LABELS)


def test_stage_progress_marks_each_step_done() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=80, color_system=None)
    with stage_progress(console, STEPS) as finished:
        for step in STEPS:
            finished(step)
    text = buffer.getvalue()
    last = text.split("\x1b[2K")[-1]  # the final frame
    for step in STEPS:
        assert f"done {STEP_LABELS[step]}" in last, last

"""A results folder that cannot take results: one clear error, nothing half-written left, and
the CLI prints one line instead of a traceback; a busy sandbox port is one line too."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from planner.errors import SinkError
from planner.sinks.jsonl_dir import JsonlDirSink
from tests.conftest import REPO

RECORD = {"id": "r1", "response": {"text": "hello"}}


def test_a_full_disk_leaves_no_orphan_tmp(tmp_path: Path) -> None:
    sink = JsonlDirSink("out", tmp_path / "results")
    (tmp_path / "results").mkdir()
    # the temporary file this process would write is the kernel's always-full device
    partial = tmp_path / "results" / f".d1.jsonl.{os.getpid()}.tmp"
    partial.symlink_to("/dev/full")
    with pytest.raises(SinkError, match="No space left on device") as info:
        sink.deliver("d1", [RECORD], [])
    assert str(info.value).startswith(f"cannot write results to {tmp_path / 'results'}: ")
    assert os.listdir(tmp_path / "results") == []  # no orphan .tmp, no half file


def test_a_folder_that_is_not_one_is_a_sink_error(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("I am a file")
    with pytest.raises(SinkError, match="cannot write results to"):
        JsonlDirSink("out", tmp_path / "results").deliver("d1", [], [RECORD])
    assert (tmp_path / "results").read_text() == "I am a file"


def test_run_once_with_an_unusable_results_folder_prints_one_line(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "w.jsonl").write_text('{"id": "a", "prompt": "hi", "deadline": "1h"}\n')
    (tmp_path / "results").write_text("not a folder")
    (tmp_path / "planner.yaml").write_text(
        "state_dir: state\nproviders:\n  openai: {kind: openai}\n"
        "sources:\n  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, "
        "settle: 0s}\nsinks:\n  out: {kind: jsonl_dir, path: results}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "planner", "run", "--once", "--sandbox", "-c", "planner.yaml"],
        capture_output=True, text=True, cwd=tmp_path, timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
    assert errors == [
        f"error: cannot write results to {tmp_path / 'results'}: File exists; nothing was "
        "marked delivered, so the next pass writes them again"
    ], done.stderr


def test_sandbox_on_a_busy_port_prints_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "planner", "sandbox", "--port", str(port)],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port"
    )


def test_sandbox_with_a_port_out_of_range_prints_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "planner", "sandbox", "--port", "80000"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "error: port must be 0 to 65535, got 80000"


def test_python_m_sandbox_on_a_busy_port_prints_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "planner.sandbox", "--port", str(port)],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use")
    )

"""`planner run` as systemd runs it: a real process, a real notify socket, real signals, a
separately running sandbox; the queue drains on schedule, a bad reload is refused, SIGTERM
stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from planner.sandbox import RunningSandbox, serve
from tests.conftest import REPO, planner_status

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
  gemini: {kind: gemini}
sources:
  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, interval: 1s}
sinks:
  out: {kind: jsonl_dir, path: results}
schedule:
  submit: interval 1s
  poll: 1s
metrics:
  listen: 127.0.0.1:{port}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def sandbox() -> Iterator[RunningSandbox]:
    with serve(speed=0.2) as running:
        yield running


def _datagrams(sock: socket.socket, until: float) -> list[str]:
    seen: list[str] = []
    sock.settimeout(0.2)
    while time.monotonic() < until:
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return seen


def _samples(scrape: str) -> dict[tuple[str, str], float]:
    """Sum of each metric's samples whose labels mention ``needle``: ``(name, needle) -> sum``;
    the needles asked for are a provider name or a label value."""
    sums: dict[tuple[str, str], float] = {}
    for line in scrape.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        for needle in ('provider="openai"', "openai", "input", "output"):
            if needle in labels:
                sums[(name, needle)] = sums.get((name, needle), 0.0) + float(value)
    return sums


def test_daemon_drains_the_queue_reloads_safely_and_stops_on_sigterm(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "a.jsonl").write_text(
        "".join(json.dumps({"id": f"r{i}", "prompt": f"question {i}"}) + "\n" for i in range(20))
    )
    config = tmp_path / "planner.yaml"
    port = free_port()
    config.write_text(CONFIG.replace("{port}", str(port)))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp_path / "notify.sock"
    notify.bind(str(notify_path))
    env = os.environ | {"NOTIFY_SOCKET": str(notify_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "planner", "run", "-c", str(config), "--sandbox-url", sandbox.url],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        messages: list[str] = []
        deadline = time.monotonic() + 30
        while not any("READY=1" in m for m in messages) and time.monotonic() < deadline:
            messages += _datagrams(notify, time.monotonic() + 1)
        assert any("READY=1" in m for m in messages), messages

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if planner_status(config)["requests"]["succeeded"] == 20:
                break
            time.sleep(1)
        assert planner_status(config)["requests"]["succeeded"] == 20
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'planner_requests{state="succeeded"} 20.0' in scrape
        assert "planner_savings_usd_total" in scrape
        # the stages' provider calls, the batches' turnaround and the planning estimates
        values = _samples(scrape)
        assert values[("planner_provider_calls_total", 'provider="openai"')] > 0
        assert values[("planner_batch_turnaround_seconds_count", "openai")] >= 1
        assert values[("planner_tokens_estimated_total", "input")] > 0
        assert values[("planner_tokens_estimated_total", "output")] > 0

        config.write_text("providers: [this is not a mapping\n")
        process.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert process.poll() is None, "a bad reload must not stop the daemon"

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        assert "reload_failed" in output
        messages += _datagrams(notify, time.monotonic() + 1)
        assert any("STOPPING=1" in m for m in messages), messages
        assert any("RELOADING=1" in m for m in messages), messages
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()


def _wait_for_stage(db: Path, stage: str, timeout: float = 60.0) -> None:
    """Until the daemon recorded a successful pass of ``stage`` (read from the store)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                    row = conn.execute(
                        "SELECT last_success_at FROM stage_run WHERE stage = ?", (stage,)
                    ).fetchone()
                if row and row[0]:
                    return
            except sqlite3.OperationalError:
                pass  # not migrated yet
        time.sleep(0.2)
    raise AssertionError(f"stage {stage} never ran")


def test_a_nightly_schedule_still_answers_an_urgent_request_before_its_deadline(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """submit runs once a year here; a request due in an hour, dropped after the start-up pass,
    is planned by the flush check's deadline trigger (not by count or wait) and answered."""
    spool = tmp_path / "spool"
    spool.mkdir()
    config = tmp_path / "planner.yaml"
    config.write_text(
        CONFIG.replace("submit: interval 1s", 'submit: "0 0 1 1 *"').replace(
            "listen: 127.0.0.1:{port}", "enabled: false"
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "planner", "run", "-c", str(config), "--sandbox-url", sandbox.url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_stage(tmp_path / "state" / "planner.db", "submit")  # the start-up pass is over
        _wait_for_stage(tmp_path / "state" / "planner.db", "flush")
        due = datetime.now(UTC) + timedelta(hours=1)
        line = {"id": "urgent", "prompt": "now please", "deadline": due.isoformat()}
        (spool / "late.jsonl").write_text(json.dumps(line) + "\n")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if planner_status(config)["requests"]["succeeded"] == 1:
                break
            time.sleep(1)
        assert planner_status(config)["requests"]["succeeded"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    flushes = [json.loads(x) for x in output.splitlines() if '"event": "flush"' in x]
    assert flushes and flushes[-1]["reasons"] == ["deadline"], output[-3000:]

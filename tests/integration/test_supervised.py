"""`planner run` under a systemd-style supervisor: killed with SIGKILL mid-work, restarted,
ready again, and done with nothing lost and nothing billed or created twice.

The supervisor does what systemd does for ``Type=notify``, ``NotifyAccess=main``,
``Restart=on-failure`` and ``WatchdogSec=``: it owns the notify socket, reads each datagram's
sender from its credentials (``SO_PASSCRED``) and accepts only the main process's, waits for
``READY=1`` before it calls the service started, expects ``WATCHDOG=1`` pings, and starts the
process again when it dies of a signal.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from planner.sandbox import RunningSandbox, serve
from tests.conftest import REPO, planner_status

REQUESTS = 300
CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
sources:
  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, interval: 1s}
sinks:
  out: {kind: jsonl_dir, path: results}
limits:
  openai: {max_requests: 40}
schedule:
  submit: interval 1s
  poll: 1s
metrics: {enabled: false}
"""
WATCHDOG_USEC = 4_000_000  # the daemon pings every 2 s
CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass
class Supervisor:
    """Just enough of systemd's service manager to run one ``Type=notify`` service."""

    command: list[str]
    cwd: Path
    socket_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    messages: list[tuple[int, str]] = field(default_factory=list)  # (sender pid, datagram)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # not from the main process

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(self.socket_path))

    def start(self) -> None:
        env = os.environ | {
            "NOTIFY_SOCKET": str(self.socket_path),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
        }
        self.process = subprocess.Popen(
            self.command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def receive(self, seconds: float) -> None:
        """Read datagrams for up to ``seconds``, keeping the main process's."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(
                    4096, socket.CMSG_SPACE(CREDENTIALS.size)
                )
            except TimeoutError:
                return
            sender = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    sender = CREDENTIALS.unpack(payload[: CREDENTIALS.size])[0]
            entry = (sender, data.decode())
            (self.messages if sender == self.pid else self.rejected).append(entry)

    def seen(self, assignment: str, pid: int) -> bool:
        return any(p == pid and assignment in m.splitlines() for p, m in self.messages)

    def wait_for(self, assignment: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.seen(assignment, self.pid) and time.monotonic() < deadline:
            self.receive(0.5)
        assert self.seen(assignment, self.pid), (assignment, self.messages[-5:], self.stderr())

    def restart_if_failed(self) -> bool:
        """``Restart=on-failure``: a death by signal or a non-zero exit starts it again."""
        assert self.process is not None
        code = self.process.poll()
        if code is None or code == 0:
            return False
        self.process.stderr.close()  # type: ignore[union-attr]
        time.sleep(0.5)  # RestartSec=
        self.start()
        return True

    def stderr(self) -> str:
        if self.process is None or self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.sock.close()


@pytest.fixture()
def sandbox() -> Iterator[RunningSandbox]:
    with serve(speed=2.0) as running:  # seconds per batch state: time to kill mid-flight
        yield running


def _in_flight(db: Path) -> int:
    """Batches out at the provider and not yet collected (read directly: no process start)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM batch WHERE state IN ('submitted', 'running')"
            ).fetchone()
    except sqlite3.OperationalError:  # the tables are not there yet
        return 0
    return int(row[0])


def _result_ids(folder: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                ids[json.loads(line)["id"]] += 1
    return ids


def test_killed_daemon_is_restarted_reports_ready_and_finishes_exactly_once(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    keys = {f"sup-{i}" for i in range(REQUESTS)}
    (spool / "work.jsonl").write_text(
        "".join(json.dumps({"id": k, "prompt": f"summarise item {k}"}) + "\n" for k in keys)
    )
    config = tmp_path / "planner.yaml"
    config.write_text(CONFIG)
    command = [sys.executable, "-m", "planner", "run", "-c", str(config)]
    command += ["--sandbox-url", sandbox.url]
    supervisor = Supervisor(command, tmp_path, tmp_path / "notify.sock")
    try:
        supervisor.start()
        first = supervisor.pid
        supervisor.wait_for("READY=1", timeout=60)
        supervisor.wait_for("WATCHDOG=1", timeout=10)

        # kill it while batches are out at the provider and not yet collected
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _in_flight(tmp_path / "state" / "planner.db"):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"no batch was ever in flight: {planner_status(config)}")
        assert supervisor.process is not None
        supervisor.process.send_signal(signal.SIGKILL)
        supervisor.process.wait(timeout=10)
        assert supervisor.process.returncode == -signal.SIGKILL

        assert supervisor.restart_if_failed()
        assert supervisor.pid != first
        supervisor.wait_for("READY=1", timeout=60)
        supervisor.wait_for("WATCHDOG=1", timeout=10)

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert not supervisor.restart_if_failed(), "the restarted daemon died on its own"
            if planner_status(config)["requests"].get("succeeded", 0) == REQUESTS:
                break
            supervisor.receive(1.0)
        assert planner_status(config)["requests"].get("succeeded", 0) == REQUESTS, planner_status(
            config
        )

        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.process.wait(timeout=90) == 0, supervisor.stderr()
        supervisor.receive(1.0)
        assert supervisor.seen("STOPPING=1", supervisor.pid), supervisor.messages[-5:]
        assert supervisor.starts == 2
        assert supervisor.rejected == [], "notifications from a process that is not the main one"
    finally:
        supervisor.close()

    # nothing lost, nothing twice: one result line per request
    results = _result_ids(tmp_path / "results")
    assert {k for k, n in results.items() if n > 1} == set(), "duplicate result lines"
    assert set(results) == keys
    # the provider's view: no request billed twice, no batch created twice
    ledger = httpx.get(sandbox.url + "/_sandbox/ledger", timeout=30).json()
    mine = [r for r in ledger["requests"] if r["key"] in keys]
    assert {r["key"] for r in mine if r["times_billed"] > 1} == set()
    assert {r["key"] for r in mine if r["times_billed"] == 1} == keys
    created = Counter(b["our_id"] for b in ledger["batches"])
    assert {o: n for o, n in created.items() if n > 1} == {}, "a batch was created twice"
